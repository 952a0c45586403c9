"""What the stream DSL (``streams.dsl``) and the composed-task DSL (``tasks.dsl``) share.

Both follow Spring Cloud Data Flow's lexers, which read a quoted string and an
option value the same way, print a value the same way, and walk their tokens
the same way; each DSL keeps its own tokens, grammar and error codes.

* :func:`quoted_end` and :func:`value_end` — where a quoted string and an
  option value (SCDF's value mode, just after ``=``) end.
* :func:`quote_value` — a value as either DSL writes it back.
* :class:`Cursor` — a parser's place in its tokens.
* :class:`Located` — where a DSL error points (the line, with a caret).

>>> text = "--expression='a b'+x | log"
>>> text[13:value_end(text, 13)[0]]
"'a b'+x"

It imports nothing of Conveyor's but ``errors``, so both DSLs can use it.
"""

from __future__ import annotations

import enum
from typing import Generic, Protocol, TypeVar

from conveyor.errors import point_at

__all__ = ["QUOTES", "VALUE_END", "Cursor", "Located", "quote_value", "quoted_end", "value_end"]

QUOTES = frozenset("'\"")
#: Characters that end an unquoted option value (SCDF's list).
VALUE_END = frozenset(" \t\r\n|;>")


def quoted_end(text: str, start: int) -> int | None:
    """Just past the quote that closes the string opened at ``start``; None if none does.

    A doubled quote inside the string stands for one and does not close it.
    """
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if not text.startswith(quote * 2, i):
                return i + 1
            i += 1
        i += 1
    return None


def value_end(text: str, start: int) -> tuple[int, int]:
    """Where an option value starting at ``start`` ends, and how many quoted parts it closed.

    The value runs to the first :data:`VALUE_END` character outside quotes. When it
    opens with a quote only that quote toggles (a doubled ``'`` inside single quotes
    stands for one); otherwise either quote opens and closes a part. A value that
    opens with a quote and closed none is unterminated; the caller says so.
    """
    opening = text[start] if text[start] in QUOTES else None
    quote_open = opening is not None
    closed = 0
    i = start + 1 if opening else start
    while i < len(text) and (quote_open or text[i] not in VALUE_END):
        ch = text[i]
        if ch == opening or (opening is None and ch in QUOTES):
            if opening == "'" and text.startswith("''", i):
                i += 2
                continue
            quote_open = not quote_open
            closed += not quote_open
        i += 1
    return i, closed


def quote_value(value: str) -> str:
    """A value as the DSL writes it: bare when it can be, else single-quoted.

    >>> quote_value("/tx"), quote_value("a b"), quote_value("it's")
    ('/tx', "'a b'", "'it''s'")
    """
    if value and not any(ch in VALUE_END or ch in QUOTES for ch in value):
        return value
    return "'" + value.replace("'", "''") + "'"


class _Token(Protocol):
    @property
    def kind(self) -> enum.Enum: ...


T = TypeVar("T", bound=_Token)


class Cursor(Generic[T]):
    """A parser's place in a definition's tokens, the last of which is the END token."""

    def __init__(self, text: str, tokens: list[T]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    @property
    def tok(self) -> T:
        return self.tokens[self.i]

    def at(self, kind: enum.Enum) -> bool:
        # A method rather than `self.tok.kind is ...` so that type narrowing does not
        # outlive the call that moves to the next token.
        return self.tok.kind is kind

    def peek(self, ahead: int = 1) -> T:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]


class Located:
    """Where a DSL error points; mixed into each DSL's error class (their roots differ).

    ``position`` is a 0-based character offset, kept inside the definition.
    """

    definition: str
    position: int
    detail: str

    def _locate(self, detail: str, definition: str, position: int) -> str:
        """Keep where the error is; the definition's line there, with a caret under it."""
        self.definition = definition
        self.position = max(0, min(position, len(definition)))
        self.detail = detail
        return point_at(definition, self.position)
