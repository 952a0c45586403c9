"""The stream DSL's tokenizer: text in, a list of positioned tokens out.

Lexing follows Spring Cloud Data Flow's rules, so the same text makes the same
tokens and the same errors at the same positions. Straight after an ``=`` that
is followed by a non-blank character, a value is lexed in its own mode: it runs
to the next space, tab, newline, ``|``, ``;`` or ``>`` that is not inside quotes,
so ``--expression=payload.matches('hello world')`` and ``--expression='hi'+payload``
are each one value. A value that is one quoted string (``'a b'``, ``"a b"``) is
unquoted, a doubled quote standing for one; any other value is kept as written.

>>> [t.text for t in tokenize("http --path=/tx | log")]
['http', '--', 'path', '=', '/tx', '|', 'log', '']
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from conveyor._dsl import QUOTES, VALUE_END, quoted_end, value_end
from conveyor.streams.errors import DslError

__all__ = ["Kind", "Token", "tokenize"]


class Kind(enum.Enum):
    IDENT = "a name"
    #: An option value lexed in value mode that is not a plain name (``/tx``, ``'hi'+x``).
    VALUE = "an option value"
    #: A quoted string; ``text`` is its content, unquoted.
    LITERAL = "a quoted string"
    COLON = "':'"
    PIPE = "'|'"
    DOUBLE_PIPE = "'||'"
    GT = "'>'"
    EQUALS = "'='"
    DOUBLE_MINUS = "'--'"
    DOT = "'.'"
    SLASH = "'/'"
    STAR = "'*'"
    HASH = "'#'"
    SEMICOLON = "';'"
    #: ``&``, ``<`` and ``@``: tokens in SCDF's lexer that no stream definition uses.
    SYMBOL = "a symbol"
    END = "the end of the definition"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    position: int
    #: Offset just past the token in the definition (adjacency decides some errors).
    end: int = 0


_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT_START = _LETTERS | frozenset("0123456789_")
_IDENT_REST = _IDENT_START | frozenset("$-")
_SINGLE = {
    ":": Kind.COLON,
    ">": Kind.GT,
    ".": Kind.DOT,
    "/": Kind.SLASH,
    "*": Kind.STAR,
    "#": Kind.HASH,
    ";": Kind.SEMICOLON,
    "&": Kind.SYMBOL,
    "<": Kind.SYMBOL,
    "@": Kind.SYMBOL,
}
_BLANK = frozenset(" \t\r\n")
_UNTERMINATED = {"'": "NON_TERMINATING_QUOTED_STRING", '"': "NON_TERMINATING_DOUBLE_QUOTED_STRING"}


def is_ident(text: str) -> bool:
    """True when ``text`` lexes as one name token."""
    return bool(text) and text[0] in _IDENT_START and all(ch in _IDENT_REST for ch in text)


def _unterminated(text: str, start: int) -> DslError:
    quote = text[start]
    return DslError(
        _UNTERMINATED[quote],
        f"expected a closing {quote} for the string opened here (double it to include it)",
        text,
        start,
    )


def _literal(text: str, start: int) -> tuple[Token, int]:
    """A quoted string outside value mode; it ends at the first undoubled quote."""
    end = quoted_end(text, start)
    if end is None:
        raise _unterminated(text, start)
    quote = text[start]
    inner = text[start + 1 : end - 1].replace(quote * 2, quote)
    return Token(Kind.LITERAL, inner, start, end), end


def _value(text: str, start: int) -> tuple[Token, int]:
    """An option value starting at ``start`` (just after ``=``, not blank)."""
    opening = text[start] if text[start] in QUOTES else None
    i, closed = value_end(text, start)
    raw = text[start:i]
    if opening and closed == 0:
        raise _unterminated(text, start)
    if opening and closed == 1 and raw.endswith(opening) and len(raw) > 1:
        inner = raw[1:-1].replace(opening * 2, opening)
        return Token(Kind.LITERAL, inner, start, i), i
    return Token(Kind.IDENT if is_ident(raw) else Kind.VALUE, raw, start, i), i


def tokenize(text: str) -> list[Token]:
    """Split a definition into tokens, ending with one END token."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _BLANK:
            i += 1
        elif ch in _IDENT_START:
            start = i
            while i < n and text[i] in _IDENT_REST:
                i += 1
            tokens.append(Token(Kind.IDENT, text[start:i], start, i))
        elif ch == "=":
            tokens.append(Token(Kind.EQUALS, "=", i, i + 1))
            i += 1
            if i < n and text[i] not in _BLANK:
                if text[i] in VALUE_END:
                    raise DslError(
                        "EXPECTED_ARGUMENT_VALUE",
                        f"expected an option value after '=', found {text[i]!r} "
                        "(quote it to give an empty value: --key='')",
                        text,
                        i,
                    )
                token, i = _value(text, i)
                tokens.append(token)
        elif ch == "|":
            double = text.startswith("||", i)
            kind = Kind.DOUBLE_PIPE if double else Kind.PIPE
            tokens.append(Token(kind, "||" if double else "|", i, i + 1 + double))
            i += 1 + double
        elif ch == "-":
            if not text.startswith("--", i):
                raise DslError("MISSING_CHARACTER", "expected '--' before an option name", text, i)
            tokens.append(Token(Kind.DOUBLE_MINUS, "--", i, i + 2))
            i += 2
        elif ch in _SINGLE:
            tokens.append(Token(_SINGLE[ch], ch, i, i + 1))
            i += 1
        elif ch in QUOTES:
            token, i = _literal(text, i)
            tokens.append(token)
        elif ch == "\\":
            raise DslError(
                "UNEXPECTED_ESCAPE_CHAR",
                "unexpected '\\'; quote a value that holds special characters instead",
                text,
                i,
            )
        else:
            what = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
            raise DslError(
                "UNEXPECTED_DATA",
                f"unexpected character {what}; expected an app name, ':', '|', '>' or "
                "'--option' (quote an option value that holds it)",
                text,
                i,
            )
    tokens.append(Token(Kind.END, "", n, n))
    return tokens
