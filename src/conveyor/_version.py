"""Conveyor's version, in one place (pyproject.toml repeats it; a test keeps the two equal).

Modules that report the version (the scoring service, the CLI) import it from
here rather than from ``conveyor``, whose ``__init__`` is the user-facing API.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
