"""The stream errors, all rooted at :class:`conveyor.errors.ConveyorError`.

ConveyorError
└── StreamError            a stream cannot be defined, wired or run
    ├── DslError           a definition is malformed or names an unknown app/option
    │                      (stable code, position, caret, what was expected)
    ├── ExpressionError    a filter/transform/router expression is not allowed or fails
    ├── PayloadError       an app produced a payload that is not JSON-compatible
    └── BinderError        a broker cannot be reached or refused an operation
"""

from __future__ import annotations

from conveyor._dsl import Located
from conveyor.errors import ConveyorError

__all__ = ["BinderError", "DslError", "ExpressionError", "PayloadError", "StreamError"]


class StreamError(ConveyorError):
    """A stream cannot be defined, wired or run."""


class DslError(StreamError, Located):
    """A stream definition is wrong at ``position`` (0-based character offset).

    ``code`` is Spring Cloud Data Flow's name for the mistake, or Conveyor's own
    (``conveyor.streams.dsl.CODES`` lists them). ``str(error)`` shows the code, the
    line of the definition with a caret under the position, and what was expected::

        DSL error [NON_TERMINATING_QUOTED_STRING] at position 21: expected a closing ' ...
          http | filter --expr='a > 0
                               ^
    """

    exit_code = 2

    def __init__(self, code: str, message: str, definition: str, position: int) -> None:
        self.code = code
        caret = self._locate(message, definition, position)
        super().__init__(f"DSL error [{code}] at position {self.position}: {message}\n{caret}")


class ExpressionError(StreamError):
    """An expression uses something outside the safe subset, or cannot be evaluated."""

    exit_code = 2


class PayloadError(StreamError):
    """A message cannot be encoded: its payload or headers are not JSON-compatible."""


class BinderError(StreamError):
    """A broker cannot be reached, or refused a publish/consume/ack."""
