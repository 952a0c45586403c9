"""The composed-task DSL's messages, numbered as Spring Cloud Data Flow numbers them.

An SCDF user who saw ``150E`` there sees ``150E`` here; each message also says
what was expected, which SCDF's often leave out.
"""

from __future__ import annotations

import enum

from conveyor.tasks.errors import TaskDslError

__all__ = ["Message", "fail"]


class Message(enum.Enum):
    """(code, text with ``{0}``-style inserts) for every error the task DSL reports."""

    NO_WHITESPACE_BEFORE_ARG_NAME = (101, "no whitespace allowed between '--' and option name")
    NO_WHITESPACE_BEFORE_ARG_EQUALS = (
        102,
        "no whitespace allowed after argument name and before '='; expected --name=value",
    )
    NO_WHITESPACE_BEFORE_ARG_VALUE = (
        103,
        "no whitespace allowed after '=' and before option value; quote a value with spaces",
    )
    EXPECTED_ARGUMENT_VALUE = (
        105,
        "expected an argument value but was '{0}' (quote it to give an empty value: --key='')",
    )
    NON_TERMINATING_DOUBLE_QUOTED_STRING = (106, 'cannot find terminating " for string')
    NON_TERMINATING_QUOTED_STRING = (
        107,
        "cannot find terminating ' for string (double it to include it: 'it''s')",
    )
    NOT_EXPECTED_TOKEN = (111, "unexpected token; expected {0} but was {1}")
    OOD = (112, "unexpectedly ran out of input; expected {0}")
    UNEXPECTED_ESCAPE_CHAR = (114, "unexpected escape character; quote the value instead")
    EXPECTED_APPNAME = (118, "expected app name but found {0}")
    EXPECTED_WHITESPACE_AFTER_APP_BEFORE_ARGUMENT = (
        119,
        "expected whitespace after app name and before argument",
    )
    ILLEGAL_TASK_NAME = (
        123,
        "illegal name for a task '{0}'; expected a letter, then letters, digits, '_' or '-'",
    )
    NO_WHITESPACE_IN_DOTTED_NAME = (
        145,
        "no whitespace is allowed between dot and components of a name",
    )
    #: Not one of SCDF's (it keeps the last value silently); 149 is a number SCDF leaves free.
    DUPLICATE_ARGUMENT = (149, "argument '--{0}' is given twice; expected each option once")
    TASK_DOUBLE_AND_REQUIRED = (150, "task dsl flow requires a pair of &, not just one")
    TASK_DOUBLE_OR_REQUIRED = (151, "task dsl requires a pair of '|' between the flows of a split")
    TASK_HYPHEN_EXPECTED_USE_FOR_TRANSITION = (
        152,
        "expected '->' (a transition) or '--' (an argument) and not just the hyphen",
    )
    TASK_MISSING_TRANSITION_ARROW = (
        153,
        "expected '->' to follow state when specifying transition",
    )
    TASK_UNQUOTED_TRANSITION_CHECK_MUST_BE_NUMBER = (
        154,
        "transition conditions must be quoted literals, numerics or '*' but '{0}' is not",
    )
    NO_DOUBLE_LABELS = (156, "multiple labels are not supported")
    TASK_ARROW_SHOULD_BE_PRECEDED_BY_CODE = (
        157,
        "transition arrow must be preceded by the exit code or 'STATUS' that should drive it",
    )
    TASK_VALIDATION_SECONDARY_SEQUENCES_MUST_BE_NAMED = (
        158,
        "secondary sequences must have labels or are unreachable; expected 'label: app ...'",
    )
    TASK_VALIDATION_DUPLICATE_LABEL = (159, "the label '{0}' has already been defined")
    TASK_VALIDATION_TRANSITION_TARGET_LABEL_UNDEFINED = (
        160,
        "transition specifies an undefined label '{0}'; expected one of: {1}",
    )
    TASK_UNEXPECTED_DATA = (162, "unexpected data in task definition '{0}'")
    TASK_MORE_INPUT = (
        163,
        "after parsing a valid task, there is still more data: '{0}'; "
        "expected '&&', '||', '>', ';', a transition or the end",
    )
    TASK_VALIDATION_LABEL_CLASHES_WITH_TASKAPP_NAME = (
        164,
        "the label '{0}' clashes with an existing unlabeled task application name",
    )
    TASK_VALIDATION_APP_NAME_CLASHES_WITH_LABEL = (
        165,
        "the app name '{0}' clashes with an existing label",
    )
    TASK_VALIDATION_APP_NAME_ALREADY_IN_USE = (
        166,
        "duplicate app name '{0}'; use a label to ensure uniqueness (label: {0})",
    )
    TASK_VALIDATION_SPLIT_WITH_ONE_FLOW = (
        167,
        "unnecessary use of split construct when only one flow to execute in parallel",
    )

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def key(self) -> str:
        return self.name.lower().replace("_", "-")


def fail(message: Message, definition: str, position: int, *inserts: object) -> TaskDslError:
    """The error for ``message`` at ``position`` of ``definition``, inserts filled in."""
    return TaskDslError(
        message.code, message.key, message.value[1].format(*inserts), definition, position
    )
