"""The composed-task DSL's tokenizer: text in, a list of positioned tokens out.

It follows Spring Cloud Data Flow's task tokenizer: names may hold ``-`` and ``$``
(for ``$END``/``$FAIL``) but stop before ``->`` (so ``0->b`` is ``0``, ``->``, ``b``);
``&`` and ``|`` only come in pairs; after ``=`` an argument value is read in its
own mode, up to a space, ``|``, ``;``, ``>`` or a line break outside quotes.

>>> [t.text for t in tokenize("a 'FAILED'->b && c --x=1")]
['a', "'FAILED'", '->', 'b', '&&', 'c', '--', 'x', '=', '1', '']
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from conveyor._dsl import QUOTES, VALUE_END, quoted_end, value_end
from conveyor.tasks.dsl.messages import Message, fail
from conveyor.tasks.errors import TaskDslError

__all__ = ["Kind", "Token", "tokenize"]


class Kind(enum.Enum):
    IDENT = "a name"
    LITERAL = "a quoted string"
    VALUE = "an argument value"
    ANDAND = "'&&'"
    OROR = "'||'"
    LT = "'<'"
    GT = "'>'"
    ARROW = "'->'"
    COLON = "':'"
    SEMICOLON = "';'"
    DOUBLE_MINUS = "'--'"
    EQUALS = "'='"
    DOT = "'.'"
    STAR = "'*'"
    END = "the end of the definition"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int
    end: int
    line: int


_WHITESPACE = frozenset(" \t\r\n")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_NAME_REST = _NAME_START | {"-"}
_SINGLE = {
    "<": Kind.LT,
    ">": Kind.GT,
    ":": Kind.COLON,
    ";": Kind.SEMICOLON,
    ".": Kind.DOT,
    "*": Kind.STAR,
    "=": Kind.EQUALS,
}


def unquote(literal: str) -> str:
    """The text of a quoted literal: outer quotes removed, a doubled ``'`` made single."""
    body = literal[1:-1]
    return body.replace("''", "'") if literal[0] == "'" else body


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 0
        self.tokens: list[Token] = []

    def push(self, kind: Kind, start: int, end: int) -> None:
        self.tokens.append(Token(kind, self.text[start:end], start, end, self.line))
        self.i = end

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        while self.i < n:
            ch = text[self.i]
            if ch in _WHITESPACE:
                self.line += ch == "\n"
                self.i += 1
            elif ch in _NAME_START:
                self.name()
            elif ch == "-":
                if text.startswith("--", self.i):
                    self.push(Kind.DOUBLE_MINUS, self.i, self.i + 2)
                elif text.startswith("->", self.i):
                    self.push(Kind.ARROW, self.i, self.i + 2)
                else:
                    raise fail(Message.TASK_HYPHEN_EXPECTED_USE_FOR_TRANSITION, text, self.i)
            elif ch == "&":
                if not text.startswith("&&", self.i):
                    raise fail(Message.TASK_DOUBLE_AND_REQUIRED, text, self.i)
                self.push(Kind.ANDAND, self.i, self.i + 2)
            elif ch == "|":
                if not text.startswith("||", self.i):
                    raise fail(Message.TASK_DOUBLE_OR_REQUIRED, text, self.i)
                self.push(Kind.OROR, self.i, self.i + 2)
            elif ch in QUOTES:
                self.literal()
            elif ch == "=":
                self.push(Kind.EQUALS, self.i, self.i + 1)
                self.value()
            elif ch in _SINGLE:
                self.push(_SINGLE[ch], self.i, self.i + 1)
            elif ch == "\\":
                raise fail(Message.UNEXPECTED_ESCAPE_CHAR, text, self.i)
            else:
                shown = ch if ch.isprintable() else f"U+{ord(ch):04X}"
                raise fail(Message.TASK_UNEXPECTED_DATA, text, self.i, shown)
        self.tokens.append(Token(Kind.END, "", n, n, self.line))
        return self.tokens

    def name(self) -> None:
        text, start = self.text, self.i
        end = start + 1
        while end < len(text) and text[end] in _NAME_REST:
            if text.startswith("->", end):  # "0->b": the arrow ends the name
                break
            end += 1
        self.push(Kind.IDENT, start, end)

    def literal(self) -> None:
        end = quoted_end(self.text, self.i)
        if end is None:
            raise _unterminated(self.text, self.i)
        self.push(Kind.LITERAL, self.i, end)

    def value(self) -> None:
        """Lex an argument value just after ``=`` (SCDF's relaxed value mode)."""
        text, start = self.text, self.i
        if start >= len(text):
            raise fail(Message.OOD, text, start, "an argument value")
        if text[start] in _WHITESPACE:
            return  # the parser reports what follows the gap
        if text[start] in VALUE_END:
            raise fail(Message.EXPECTED_ARGUMENT_VALUE, text, start, text[start])
        quote_in_use = text[start] if text[start] in QUOTES else None
        i, closed = value_end(text, start)
        if quote_in_use is not None and closed == 0:
            raise _unterminated(text, start)
        whole = quote_in_use is not None and closed == 1 and text[i - 1] == quote_in_use
        self.push(Kind.LITERAL if whole else Kind.VALUE, start, i)


def _unterminated(text: str, start: int) -> TaskDslError:
    if text[start] == '"':
        return fail(Message.NON_TERMINATING_DOUBLE_QUOTED_STRING, text, start)
    return fail(Message.NON_TERMINATING_QUOTED_STRING, text, start)


def tokenize(text: str) -> list[Token]:
    """Split a definition into tokens, ending with one END token."""
    return _Lexer(text).run()
