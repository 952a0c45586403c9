"""The stream DSL's parser: tokens in, a :class:`StreamNode` out, or a :class:`DslError`.

Grammar (Spring Cloud Data Flow's stream language)::

    definition := (name '=')? body END
    body       := ':' dest '>' ( ':' dest | apps )
                | apps
    apps       := app ( '|' app )* ( ('>' | '|') ':' dest )?
    app        := (label ':')? name ( '--' key '=' value )*

>>> parse_stream("http --path=/tx | log").apps[0].options[0].value
'/tx'
"""

from __future__ import annotations

import re

from conveyor.streams.dsl.nodes import AppNode, Destination, Option, StreamNode
from conveyor.streams.dsl.tokens import Kind, Token, tokenize
from conveyor.streams.errors import DslError

__all__ = ["parse_stream"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
_DEST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)*\Z")
#: Longest definition accepted; definitions arrive over an API.
MAX_LENGTH = 64 * 1024


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, kind: Kind) -> bool:
        return self.tok.kind is kind

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def fail(self, code: str, message: str, token: Token | None = None) -> DslError:
        return DslError(code, message, self.text, (token or self.tok).position)

    def found(self) -> str:
        t = self.tok
        return "the end of the definition" if t.kind is Kind.END else f"{t.text!r}"

    def expect(self, kind: Kind, code: str, what: str) -> Token:
        if self.tok.kind is not kind:
            raise self.fail(code, f"expected {what}, found {self.found()}")
        token = self.tok
        self.i += 1
        return token

    def name(self, pattern: re.Pattern[str], code: str, what: str) -> Token:
        token = self.expect(Kind.IDENT, code, what)
        if not pattern.match(token.text):
            raise self.fail("invalid-name", f"expected {what}, found {token.text!r}", token)
        return token

    def destination(self) -> Destination:
        self.expect(Kind.COLON, "expected-destination", "':' and a destination name")
        token = self.name(_DEST, "expected-destination", "a destination name after ':'")
        return Destination(token.text, token.position)

    def parse(self) -> StreamNode:
        if self.tok.kind is Kind.END:
            raise self.fail("empty-definition", "expected an app name or ':destination >'")
        stream_name: str | None = None
        if self.tok.kind is Kind.IDENT and self.peek().kind is Kind.EQUALS:
            stream_name = self.name(_NAME, "expected-app", "a stream name").text
            self.i += 1
        source: Destination | None = None
        sink: Destination | None = None
        apps: list[AppNode] = []
        if self.tok.kind is Kind.COLON:
            source = self.destination()
            self.expect(Kind.GT, "expected-gt", "'>' after the input destination")
            if self.tok.kind is Kind.COLON:
                sink = self.destination()
                if sink.name == source.name:
                    raise self.fail(
                        "bridge-to-itself",
                        "a bridge needs two different destinations",
                        self.peek(-1),
                    )
                self.end()
                return StreamNode((), source, sink, stream_name)
        apps.append(self.app())
        while self.tok.kind is Kind.PIPE:
            self.i += 1
            if self.at(Kind.COLON):
                sink = self.destination()
                break
            apps.append(self.app())
        else:
            if self.tok.kind is Kind.GT:
                self.i += 1
                sink = self.destination()
        self.end()
        self.check_unique(apps)
        return StreamNode(tuple(apps), source, sink, stream_name)

    def end(self) -> None:
        if self.tok.kind is Kind.SEMICOLON:
            raise self.fail(
                "unexpected-token",
                "expected the end of the definition; ';' is not allowed, give one stream per "
                "definition",
            )
        if self.tok.kind is not Kind.END:
            raise self.fail(
                "unexpected-token",
                f"expected '--option', '|', '> :destination' or the end, found {self.found()}",
            )

    def app(self) -> AppNode:
        label: str | None = None
        if self.tok.kind is Kind.IDENT and self.peek().kind is Kind.COLON:
            label = self.name(_NAME, "expected-app", "a label").text
            self.i += 1
        token = self.name(_NAME, "expected-app", "an app name")
        options: list[Option] = []
        seen: set[str] = set()
        while self.tok.kind is Kind.DOUBLE_MINUS:
            self.i += 1
            key = self.name(_KEY, "expected-option", "an option name after '--'")
            self.expect(Kind.EQUALS, "expected-equals", f"'=' and a value after '--{key.text}'")
            value = self.expect(Kind.VALUE, "missing-value", "an option value")
            if key.text in seen:
                raise self.fail("duplicate-option", f"option --{key.text} is given twice", key)
            seen.add(key.text)
            options.append(Option(key.text, value.text, key.position))
        if self.tok.kind is Kind.IDENT or self.tok.kind is Kind.VALUE:
            raise self.fail(
                "unexpected-token",
                f"expected '--option', '|', '> :destination' or the end after app {token.text!r}, "
                f"found {self.found()} (options are written --key=value)",
            )
        return AppNode(token.text, label, tuple(options), token.position)

    def check_unique(self, apps: list[AppNode]) -> None:
        seen: dict[str, AppNode] = {}
        for app in apps:
            ref = app.reference
            if ref in seen:
                code = "duplicate-label" if app.label else "duplicate-app"
                hint = (
                    f"label {ref!r} is already used in this stream"
                    if app.label
                    else f"app {ref!r} appears twice; give one a label (e.g. 'second: {ref}')"
                )
                raise DslError(code, hint, self.text, app.position)
            seen[ref] = app


def parse_stream(definition: str) -> StreamNode:
    """Parse one stream definition, or raise a :class:`DslError` saying where and why."""
    if len(definition) > MAX_LENGTH:
        raise DslError(
            "too-long",
            f"a definition may have at most {MAX_LENGTH} characters",
            definition,
            MAX_LENGTH,
        )
    return _Parser(definition).parse()
