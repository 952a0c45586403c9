"""The PMML evaluator's one error of its own: an input the document declares invalid.

It is a ModelError (Conveyor's tree) and a ValueError, so callers that treat
a model refusing its input as the caller's fault (the scoring service answers
422) recognise it without knowing PMML.
"""

from __future__ import annotations

from conveyor.errors import ModelError

__all__ = ["InvalidInputError"]


class InvalidInputError(ModelError, ValueError):
    """A batch violates the DataDictionary/MiningSchema (returnInvalid), or is malformed."""
