"""The stream DSL's tokenizer: text in, a list of positioned tokens out.

Option values are lexed in their own mode: after ``--name=`` a value is either
quoted (``'...'`` or ``"..."``, the quote doubled to include it) or runs to the
next space, ``|``, ``;`` or ``>``.

>>> [t.text for t in tokenize("http --path=/tx | log")]
['http', '--', 'path', '=', '/tx', '|', 'log', '']
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from conveyor.streams.errors import DslError

__all__ = ["Kind", "Token", "tokenize"]


class Kind(enum.Enum):
    IDENT = "a name"
    VALUE = "an option value"
    COLON = "':'"
    PIPE = "'|'"
    GT = "'>'"
    EQUALS = "'='"
    DOUBLE_MINUS = "'--'"
    SEMICOLON = "';'"
    END = "the end of the definition"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    position: int


_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_IDENT_REST = _IDENT_START | frozenset(".-")
_SINGLE = {":": Kind.COLON, "|": Kind.PIPE, ">": Kind.GT, "=": Kind.EQUALS, ";": Kind.SEMICOLON}
#: Characters that end an unquoted option value.
_VALUE_END = frozenset(" \t\r\n|;>")


def _value(text: str, start: int) -> tuple[Token, int]:
    """Lex an option value starting at ``start`` (just after ``=``)."""
    if start < len(text) and text[start] in "'\"":
        quote = text[start]
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            if text[i] == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    chars.append(quote)
                    i += 2
                    continue
                return Token(Kind.VALUE, "".join(chars), start), i + 1
            chars.append(text[i])
            i += 1
        raise DslError(
            "unterminated-quote",
            f"expected a closing {quote} for the value opened here (double it to include it)",
            text,
            start,
        )
    i = start
    while i < len(text) and text[i] not in _VALUE_END:
        i += 1
    if i == start:
        raise DslError(
            "missing-value",
            "expected an option value after '=' (quote it to give an empty value: --key='')",
            text,
            start,
        )
    return Token(Kind.VALUE, text[start:i], start), i


def tokenize(text: str) -> list[Token]:
    """Split a definition into tokens, ending with one END token."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "-" and text.startswith("--", i):
            tokens.append(Token(Kind.DOUBLE_MINUS, "--", i))
            i += 2
        elif ch in _SINGLE:
            tokens.append(Token(_SINGLE[ch], ch, i))
            i += 1
            # '=' after "--name" opens an option value.
            if (
                ch == "="
                and len(tokens) >= 3
                and tokens[-2].kind is Kind.IDENT
                and tokens[-3].kind is Kind.DOUBLE_MINUS
            ):
                token, i = _value(text, i)
                tokens.append(token)
        elif ch in _IDENT_START:
            start = i
            while i < n and text[i] in _IDENT_REST:
                i += 1
            tokens.append(Token(Kind.IDENT, text[start:i], start))
        else:
            what = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
            raise DslError(
                "unexpected-character",
                f"unexpected character {what}; expected an app name, ':', '|', '>' or '--option'",
                text,
                i,
            )
    tokens.append(Token(Kind.END, "", n))
    return tokens
