"""The run search expression shared by ``conveyor runs --where``, the API and the dashboard.

    >>> parse("params.n_estimators >= 200 and metrics.auc > 0.9 and tags.stage = 'prod'")

A small language, tokenized and parsed by recursive descent into a tree that
:mod:`conveyor.store.search_sql` compiles to SQL; nothing is ever evaluated
as Python. Grammar (keywords in any case)::

    expression := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expression ")" | comparison
    comparison := attribute operator literal
    attribute  := params.KEY | metrics.KEY | tags.KEY | [attributes.]NAME
    operator   := = | != | <> | < | <= | > | >= | like
    literal    := 'text' | "text" | number | true | false

A KEY is letters, digits and ``_ - . / :``, or any text in backticks
(``params.`learning rate```). Metrics compare their latest value; ``like``
matches case-insensitively with ``%`` and ``_``; ``started`` and ``ended``
take seconds since the epoch or a UTC date such as ``'2026-12-01'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from conveyor.errors import UsageError, point_at

__all__ = ["ATTRIBUTES", "Compare", "Junction", "Not", "SearchError", "Value", "parse"]

Value = str | float | bool

#: Run attributes a search can name without a prefix, and the type each compares as.
ATTRIBUTES = {
    "id": str,
    "name": str,
    "status": str,
    "experiment": str,
    "started": float,
    "ended": float,
}
_PREFIXES = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
}
_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "INTERRUPTED")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_KEYWORDS = ("and", "or", "not", "like", "true", "false")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY = re.compile(r"[A-Za-z0-9_\-./:]+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_MAX_LENGTH = 4000
_MAX_DEPTH = 50


class SearchError(UsageError):
    """A search expression is malformed at ``position``: the text with a caret under it."""

    def __init__(self, text: str, position: int, message: str) -> None:
        super().__init__(
            f"search error at position {position}: {message}\n{point_at(text, position)}",
            hint='Example: --where "params.n_estimators >= 200 and metrics.auc > 0.9 and '
            "tags.stage = 'prod'\"",
        )
        self.position = position


@dataclass(frozen=True)
class Compare:
    """``kind.key op value``: kind is params, metrics, tags or attributes."""

    kind: str
    key: str
    op: str
    value: Value


@dataclass(frozen=True)
class Not:
    operand: Expression


@dataclass(frozen=True)
class Junction:
    """``and`` or ``or`` over two or more operands."""

    op: str
    operands: tuple[Expression, ...]


Expression = Compare | Not | Junction


@dataclass(frozen=True)
class _Token:
    kind: str  # name, string, number, op, keyword, "(", ")", end
    text: str
    position: int
    value: Value = ""


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            found.append(_Token(ch, ch, i))
            i += 1
        elif ch in "'\"":
            end = i + 1
            chars: list[str] = []
            while True:
                if end >= len(text):
                    raise SearchError(text, i, f"this string has no closing {ch}")
                if text[end] == ch:
                    if text[end + 1 : end + 2] == ch:  # a doubled quote stands for itself
                        chars.append(ch)
                        end += 2
                        continue
                    break
                chars.append(text[end])
                end += 1
            found.append(_Token("string", text[i : end + 1], i, "".join(chars)))
            i = end + 1
        elif op := next((o for o in _OPERATORS if text.startswith(o, i)), None):
            found.append(_Token("op", op, i))
            i += len(op)
        elif number := _NUMBER.match(text, i):
            found.append(_Token("number", number.group(), i, float(number.group())))
            i = number.end()
        elif name := _NAME.match(text, i):
            i = name.end()
            word = name.group()
            if word.lower() in _KEYWORDS:
                found.append(_Token("keyword", word.lower(), name.start()))
                continue
            key = ""
            if text.startswith(".", i):
                i, key = _key(text, i + 1)
            found.append(_Token("name", word, name.start(), key))
        else:
            raise SearchError(text, i, f"{ch!r} is not part of a search expression")
    found.append(_Token("end", "", len(text)))
    return found


def _key(text: str, i: int) -> tuple[int, str]:
    """The key after ``params.``: plain characters, or anything in backticks."""
    if text.startswith("`", i):
        end = text.find("`", i + 1)
        if end == -1:
            raise SearchError(text, i, "this key has no closing `")
        if end == i + 1:
            raise SearchError(text, i, "expected a key between the backticks")
        return end + 1, text[i + 1 : end]
    match = _KEY.match(text, i)
    if match is None:
        raise SearchError(text, i, "expected a key after the dot (use `...` for other characters)")
    return match.end(), match.group()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def fail(self, message: str, token: _Token | None = None) -> SearchError:
        return SearchError(self.text, (token or self.token).position, message)

    def keyword(self, word: str) -> bool:
        if self.token.kind == "keyword" and self.token.text == word:
            self.at += 1
            return True
        return False

    def expression(self) -> Expression:
        operands = [self.term()]
        while self.keyword("or"):
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Junction("or", tuple(operands))

    def term(self) -> Expression:
        operands = [self.factor()]
        while self.keyword("and"):
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else Junction("and", tuple(operands))

    def factor(self) -> Expression:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {_MAX_DEPTH} levels")
        try:
            if self.keyword("not"):
                return Not(self.factor())
            if self.token.kind == "(":
                self.at += 1
                inner = self.expression()
                if self.token.kind != ")":
                    raise self.fail(f"expected ')' or 'and'/'or', found {self.describe()}")
                self.at += 1
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def describe(self) -> str:
        return "the end" if self.token.kind == "end" else repr(self.token.text)

    def comparison(self) -> Compare:
        start = self.token
        if start.kind != "name":
            raise self.fail(
                "expected an attribute such as params.NAME, metrics.NAME, tags.NAME or "
                f"status, found {self.describe()}"
            )
        self.at += 1
        kind, key = self.attribute(start)
        op_token = self.token
        if op_token.kind == "op":
            op = "!=" if op_token.text == "<>" else op_token.text
        elif op_token.kind == "keyword" and op_token.text == "like":
            op = "like"
        else:
            raise self.fail(f"expected an operator (= != < <= > >= like), found {self.describe()}")
        self.at += 1
        literal = self.token
        if literal.kind in ("string", "number"):
            value: Value = literal.value
        elif literal.kind == "keyword" and literal.text in ("true", "false"):
            value = literal.text == "true"
        else:
            raise self.fail(
                f"expected a value ('text', a number, true, false), found {self.describe()}"
            )
        self.at += 1
        return Compare(kind, key, op, self.check(kind, key, op, value, literal))

    def attribute(self, token: _Token) -> tuple[str, str]:
        word, key = token.text.lower(), str(token.value)
        if key:
            kind = _PREFIXES.get(word)
            if kind is None:
                raise self.fail(f"{token.text!r} is not params, metrics, tags or attributes", token)
            if kind == "attributes":
                kind, word = "", key.lower()
            else:
                return kind, key
        if word not in ATTRIBUTES:
            raise self.fail(
                f"{token.text!r} is not an attribute of a run; use one of "
                f"{', '.join(ATTRIBUTES)}, or params.NAME, metrics.NAME, tags.NAME",
                token,
            )
        return "attributes", word

    def check(self, kind: str, key: str, op: str, value: Value, token: _Token) -> Value:
        """The value as the attribute compares it, or an error at the value."""
        if op == "like" and not isinstance(value, str):
            raise self.fail("like needs a 'text' pattern, such as 'rf-%'", token)
        if isinstance(value, bool) and (kind != "params" or op not in ("=", "!=")):
            raise self.fail("true and false are compared with = or != to params only", token)
        if kind == "metrics" and not isinstance(value, float):
            raise self.fail(f"metrics.{key} is a number; compare it with a number", token)
        if kind == "tags" and isinstance(value, float):
            return f"{value:g}"
        if kind == "attributes" and ATTRIBUTES[key] is float:
            if isinstance(value, str) and op != "like":
                return _epoch(self, value, token)
            if not isinstance(value, float):
                raise self.fail(f"{key} is a time; compare it with a number or a date", token)
        elif kind == "attributes" and isinstance(value, float):
            raise self.fail(f"{key} is text; put the value in quotes", token)
        if kind == "attributes" and key == "status" and op != "like":
            status = str(value).upper()
            if status not in _STATUSES:
                raise self.fail(f"{value!r} is not a run status ({', '.join(_STATUSES)})", token)
            return status
        return value


def _epoch(parser: _Parser, text: str, token: _Token) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise parser.fail(
            f"{text!r} is not a date; write '2026-12-01' or '2026-12-01 14:30'", token
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse(text: str) -> Expression:
    """The expression's tree; SearchError (a UsageError) names the position of a mistake."""
    if len(text) > _MAX_LENGTH:
        raise SearchError(text, _MAX_LENGTH, f"a search is at most {_MAX_LENGTH} characters")
    parser = _Parser(text)
    if parser.token.kind == "end":
        raise parser.fail("the search is empty; write a condition such as metrics.auc > 0.9")
    tree = parser.expression()
    if parser.token.kind != "end":
        raise parser.fail(f"expected 'and', 'or' or the end, found {parser.describe()}")
    return tree
