"""The task errors, all rooted at :class:`conveyor.errors.ConveyorError`.

ConveyorError
└── TaskError              a composed task cannot be defined, launched or changed
    ├── TaskDslError       a definition is malformed (SCDF message code, position, caret,
    │                      what was expected)
    ├── CronError          [tasks.cron] a cron expression or time zone that cannot be used
    └── IllegalTaskTransition  [tasks.states] a step or execution asked for an undrawn move
"""

from __future__ import annotations

from conveyor._dsl import Located
from conveyor.errors import ConveyorError

__all__ = ["TaskDslError", "TaskError"]


class TaskError(ConveyorError):
    """A composed task cannot be defined, launched or changed."""


class TaskDslError(TaskError, Located):
    """A composed-task definition is wrong at ``position`` (0-based character offset).

    ``code`` is Spring Cloud Data Flow's message number, so its users recognise the
    error; ``key`` is the same message as a readable word. ``str(error)`` shows both,
    the line with a caret under the position, and what was expected::

        150E:(pos 2): task dsl flow requires a pair of &, not just one [task-double-and-required]
          a & b
            ^
    """

    exit_code = 2

    def __init__(self, code: int, key: str, message: str, definition: str, position: int) -> None:
        self.code = code
        self.key = key
        caret = self._locate(message, definition, position)
        super().__init__(f"{code}E:(pos {self.position}): {message} [{key}]\n{caret}")
