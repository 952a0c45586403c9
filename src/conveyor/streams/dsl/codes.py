"""Every code a stream definition error can carry, with what it means.

Syntax codes are named and positioned as Spring Cloud Data Flow names and
positions them (its ``DSLMessage``), so a user moving from SCDF reads the same
code at the same 0-based position. The codes SCDF does not have are Conveyor's
own: stricter checks, and the catalogue's checks of apps and options.
docs/stream-dsl.md keeps the same table; a test keeps the two in step.
"""

from __future__ import annotations

__all__ = ["CODES", "CONVEYOR_CODES", "SCDF_CODES"]

#: Codes SCDF's parser gives for the same mistakes (its numeric code in brackets).
SCDF_CODES: dict[str, str] = {
    "UNEXPECTED_DATA_AFTER_STREAMDEF": "(100) text after a complete definition",
    "NO_WHITESPACE_BEFORE_ARG_NAME": "(101) a space between '--' and the option name",
    "NO_WHITESPACE_BEFORE_ARG_EQUALS": "(102) a space between the option name and '='",
    "NO_WHITESPACE_BEFORE_ARG_VALUE": "(103) a space between '=' and the option value",
    "EXPECTED_ARGUMENT_VALUE": "(105) '=' not followed by a value",
    "NON_TERMINATING_DOUBLE_QUOTED_STRING": '(106) a " that is never closed',
    "NON_TERMINATING_QUOTED_STRING": "(107) a ' that is never closed",
    "MISSING_CHARACTER": "(108) a single '-' where '--' was meant",
    "NOT_EXPECTED_TOKEN": "(111) a token other than the one the grammar needs here",
    "OOD": "(112) the definition ends where more is needed (out of data)",
    "UNEXPECTED_ESCAPE_CHAR": "(114) a backslash outside a quoted value",
    "UNEXPECTED_DATA": "(115) a character the DSL does not use, outside a quoted value",
    "EXPECTED_APPNAME": "(118) something other than an app name where an app is expected",
    "EXPECTED_WHITESPACE_AFTER_APP_BEFORE_ARGUMENT": "(119) '--' stuck to the name before it",
    "ILLEGAL_STREAM_NAME": "(122) a stream name that is not a letter, then letters, digits, "
    "'_' or '-' (at most 42)",
    "EXPECTED_DESTINATION_PREFIX": "(133) a name after '>' without the ':' of a destination",
    "NO_WHITESPACE_IN_DESTINATION_DEFINITION": "(139) a space around a '.' in a destination",
    "DUPLICATE_LABEL": "(143) two apps with the same label (an app's name is its label "
    "unless it has one)",
    "NO_WHITESPACE_IN_DOTTED_NAME": "(145) a space around a '.' in an option name",
    "EXPECTED_WHITESPACE_AFTER_LABEL_COLON": "(147) 'label:app' without a space after ':'",
    "EXPECTED_STREAM_NAME_AFTER_LABEL_COLON": "(148) a definition that is only ':'",
    "NO_DOUBLE_LABELS": "(156) two labels on one app",
    "DONT_MIX_PIPE_AND_DOUBLEPIPE": "(169) '|' and '||' in one definition",
    "DONT_USE_DOUBLEPIPE_WITH_CHANNELS": "(170) '||' in a definition with a destination",
    "UNEXPECTED_DATA_IN_DESTINATION_NAME": "(171) a destination name that starts with "
    "something other than a name, '*', '/' or '#'",
}

#: Conveyor's own codes: definitions SCDF accepts that Conveyor refuses, and the
#: catalogue's checks of what the apps are and what their options mean.
CONVEYOR_CODES: dict[str, str] = {
    "TOO_LONG": "a definition longer than 64 KiB",
    "DUPLICATE_OPTION": "the same option twice on one app (SCDF keeps the last)",
    "BRIDGE_TO_ITSELF": "':a > :a', a bridge from a destination to itself",
    "UNKNOWN_APP": "no app of that name in the catalogue (or registered) for that role",
    "WRONG_ROLE": "a source used as a processor or sink, or the like",
    "LONELY_APP": "one app with neither an input nor an output destination",
    "UNKNOWN_OPTION": "an option the app does not have (the error names the ones it has)",
    "MISSING_OPTION": "an option the app needs is not given",
    "BAD_OPTION_VALUE": "an option value of the wrong type or out of range",
    "BAD_EXPRESSION": "an expression outside the safe subset, or too costly",
    "PATH_NOT_ALLOWED": "a path outside the data folder and the allowed roots",
}

#: Every code, SCDF's first.
CODES: dict[str, str] = {**SCDF_CODES, **CONVEYOR_CODES}
