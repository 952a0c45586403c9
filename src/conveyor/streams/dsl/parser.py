"""The stream DSL's parser: tokens in, a :class:`StreamNode` out, or a :class:`DslError`.

Grammar (Spring Cloud Data Flow's stream language)::

    definition  := (name '=')? body END
    body        := source '>' ':' dest                  a bridge
                 | source? apps sink?
    source      := ':' dest options                     when a '>' comes before any '|'
    apps        := app ( '|' app )*  |  app ( '||' app )*
    sink        := '>' ':' dest options  |  '|' ':' dest options
    app         := (label ':')? name options
    options     := ( '--' key ('.' key)* '=' value )*
    dest        := part+ ( '.' part* )*                 part: a name, '*', '/' or '#'

Tokens of an option, a label's colon and a destination's parts must touch;
whitespace between them is an error, as in SCDF. Errors carry SCDF's code at
SCDF's position (see :mod:`conveyor.streams.dsl.codes`).

>>> parse_stream("http --path=/tx | log").apps[0].options[0].value
'/tx'
"""

from __future__ import annotations

import re

from conveyor._dsl import Cursor
from conveyor.streams.dsl.nodes import AppNode, Destination, Option, StreamNode
from conveyor.streams.dsl.tokens import Kind, Token, tokenize
from conveyor.streams.errors import DslError

__all__ = ["MAX_LENGTH", "STREAM_NAME_PATTERN", "is_stream_name", "parse_stream"]

#: A stream's name: SCDF's rule (a letter, then letters, digits, '_' or '-') without
#: '$', and at most 42 characters so ``<stream>-<label>`` can name a platform app.
#: The control API validates names with this same pattern.
STREAM_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,41}$"
_STREAM_NAME = re.compile(STREAM_NAME_PATTERN)
#: Longest definition accepted; definitions arrive over an API.
MAX_LENGTH = 64 * 1024
_DEST_PARTS = frozenset({Kind.IDENT, Kind.STAR, Kind.SLASH, Kind.HASH})
_VALUES = frozenset({Kind.IDENT, Kind.VALUE, Kind.LITERAL})


def is_stream_name(name: str) -> bool:
    """True when ``name`` may name a stream (in a definition or in the control API)."""
    return _STREAM_NAME.match(name) is not None


def _describe(token: Token) -> str:
    if token.kind is Kind.END:
        return "the end of the definition"
    if token.kind is Kind.LITERAL:
        return f"the quoted string {token.text!r}"
    return repr(token.text)


class _Parser(Cursor[Token]):
    def adjacent(self) -> bool:
        """Does the current token touch the one before it? (Never true at the end.)"""
        return (
            self.i > 0
            and not self.at(Kind.END)
            and self.tok.position == self.tokens[self.i - 1].end
        )

    def fail(self, code: str, message: str, position: int | None = None) -> DslError:
        where = self.tok.position if position is None else position
        return DslError(code, message, self.text, where)

    def advance(self, what: str) -> Token:
        """The current token, moving past it; OOD when the definition has ended."""
        token = self.tok
        if token.kind is Kind.END:
            raise self.fail("OOD", f"expected {what}, found the end of the definition")
        self.i += 1
        return token

    def eat(self, kind: Kind, what: str) -> Token:
        token = self.advance(what)
        if token.kind is not kind:
            raise self.fail(
                "NOT_EXPECTED_TOKEN", f"expected {what}, found {_describe(token)}", token.position
            )
        return token

    # -- the definition --------------------------------------------------------------------

    def parse(self) -> StreamNode:
        name: Token | None = None
        if self.peek().kind is Kind.EQUALS:
            if not self.at(Kind.IDENT):
                raise self.fail(
                    "ILLEGAL_STREAM_NAME",
                    f"expected a stream name before '=', found {_describe(self.tok)}",
                )
            name = self.tok
            self.i += 2
        source = self.source_destination()
        apps: list[AppNode] = []
        unbound = False
        if source is not None and self.at(Kind.COLON) and self.no_more_pipes():
            sink: Destination | None = self.destination()
            if sink is not None and sink.name == source.name:
                raise self.fail(
                    "BRIDGE_TO_ITSELF",
                    "a bridge needs two different destinations",
                    sink.position,
                )
        else:
            apps, unbound = self.app_list(source is not None)
            sink = self.sink_destination()
        self.end(bool(apps) and sink is None)
        if name is not None and not is_stream_name(name.text):
            raise self.fail(
                "ILLEGAL_STREAM_NAME",
                f"expected a stream name (a letter, then letters, digits, '_' or '-'; at most "
                f"42), found {name.text!r}",
                name.position,
            )
        self.check_unique(apps)
        return StreamNode(tuple(apps), source, sink, name.text if name else None, unbound)

    def end(self, after_apps: bool) -> None:
        token = self.tok
        if token.kind is Kind.END:
            return
        if after_apps and self.tokens[self.i - 1].kind is Kind.GT:
            raise self.fail(
                "EXPECTED_DESTINATION_PREFIX",
                f"expected ':' and a destination name after '>', found {_describe(token)} "
                f"(write '> :{token.text}')",
            )
        hint = {
            Kind.SEMICOLON: "; ';' is not allowed, give one stream per definition",
            Kind.IDENT: " (options are written --key=value)",
            Kind.COLON: " (a label is written 'label: app', with no space before ':')",
        }.get(token.kind, "")
        raise self.fail(
            "UNEXPECTED_DATA_AFTER_STREAMDEF",
            f"expected '--option', '|', '> :destination' or the end, found {_describe(token)}"
            + hint,
        )

    def no_more_pipes(self) -> bool:
        return all(t.kind is not Kind.PIPE for t in self.tokens[self.i :])

    def check_unique(self, apps: list[AppNode]) -> None:
        seen: dict[str, AppNode] = {}
        for app in apps:
            ref = app.reference
            if ref in seen:
                hint = (
                    f"label {ref!r} is already used in this stream"
                    if app.label
                    else f"app {ref!r} appears twice; give one a label (e.g. 'second: {ref}')"
                )
                raise DslError("DUPLICATE_LABEL", hint, self.text, app.position)
            seen[ref] = app

    # -- destinations ----------------------------------------------------------------------

    def source_destination(self) -> Destination | None:
        """``:dest >`` when a '>' comes before any '|' (how SCDF tells an input apart)."""
        for token in self.tokens[self.i :]:
            if token.kind is Kind.PIPE:
                return None
            if token.kind is Kind.GT:
                break
        else:
            return None
        if not self.at(Kind.COLON):
            return None
        destination = self.destination()
        self.eat(Kind.GT, "'>' after the input destination")
        return destination

    def sink_destination(self) -> Destination | None:
        if self.at(Kind.GT):
            self.i += 1
            if self.at(Kind.END):
                raise self.fail("OOD", "expected ':' and a destination name after '>'")
            return self.destination() if self.at(Kind.COLON) else None
        if self.at(Kind.PIPE) and self.peek().kind is Kind.COLON:
            self.i += 1  # Conveyor also reads '| :dest' as '> :dest'
            return self.destination()
        return None

    def destination(self) -> Destination:
        colon = self.eat(Kind.COLON, "':' and a destination name")
        first = self.tok
        if first.kind not in _DEST_PARTS:
            if first.kind is Kind.END:
                raise self.fail("OOD", "expected a destination name after ':'", colon.position)
            raise self.fail(
                "UNEXPECTED_DATA_IN_DESTINATION_NAME",
                f"expected a destination name after ':', found {_describe(first)}",
            )
        parts = [first.text]
        self.i += 1
        self.destination_parts(parts)
        while self.at(Kind.DOT):
            if not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_IN_DESTINATION_DEFINITION",
                    "expected no space before '.' in a destination name",
                )
            self.i += 1
            parts.append(".")
            if not self.adjacent():
                if self.at(Kind.END):
                    raise self.fail("OOD", "expected the rest of the destination name after '.'")
                raise self.fail(
                    "NO_WHITESPACE_IN_DESTINATION_DEFINITION",
                    "expected no space after '.' in a destination name",
                )
            self.destination_parts(parts)
        return Destination("".join(parts), first.position, tuple(self.options()))

    def destination_parts(self, parts: list[str]) -> None:
        while self.adjacent() and self.tok.kind in _DEST_PARTS:
            parts.append(self.tok.text)
            self.i += 1

    # -- apps ------------------------------------------------------------------------------

    def app_list(self, has_source: bool) -> tuple[list[AppNode], bool]:
        apps = [self.app()]
        pipe: int | None = None
        double: int | None = None
        while True:
            token = self.tok
            if token.kind is Kind.PIPE:
                if double is not None:
                    raise self.fail(
                        "DONT_MIX_PIPE_AND_DOUBLEPIPE",
                        "expected '||' like the rest of the list; '|' and '||' do not mix",
                    )
                if self.peek().kind is Kind.COLON:
                    break  # '| :dest', an output destination
                pipe = token.position
            elif token.kind is Kind.DOUBLE_PIPE:
                if has_source:
                    raise self.fail(
                        "DONT_USE_DOUBLEPIPE_WITH_CHANNELS",
                        "expected '|' between apps that read a destination; '||' joins "
                        "apps that are not wired to each other",
                    )
                if pipe is not None:
                    raise self.fail(
                        "DONT_MIX_PIPE_AND_DOUBLEPIPE",
                        "expected '|' like the rest of the pipe; '|' and '||' do not mix",
                    )
                double = token.position
            else:
                break
            self.i += 1
            apps.append(self.app())
        if double is not None and (self.at(Kind.GT) or self.at(Kind.PIPE)):
            raise self.fail(
                "DONT_USE_DOUBLEPIPE_WITH_CHANNELS",
                "expected '|' between apps that write to a destination; '||' joins apps "
                "that are not wired to each other",
                double,
            )
        return apps, double is not None

    def app(self) -> AppNode:
        if self.at(Kind.COLON) and len(self.tokens) == 2:
            raise self.fail(
                "EXPECTED_STREAM_NAME_AFTER_LABEL_COLON", "expected an app name or ':dest > app'"
            )
        name = self.advance("an app name")
        if name.kind is not Kind.IDENT:
            hint = (
                "; an input destination is written ':name > app'" if name.kind is Kind.COLON else ""
            )
            raise self.fail(
                "EXPECTED_APPNAME",
                f"expected an app name, found {_describe(name)}{hint}",
                name.position,
            )
        label: Token | None = None
        if self.at(Kind.COLON) and self.adjacent():
            self.i += 1
            if self.adjacent():
                raise self.fail(
                    "EXPECTED_WHITESPACE_AFTER_LABEL_COLON",
                    f"expected a space after the label '{name.text}:'",
                )
            label, name = name, self.eat(Kind.IDENT, "an app name after the label")
            if self.at(Kind.COLON) and self.adjacent():
                raise self.fail(
                    "NO_DOUBLE_LABELS",
                    f"expected one label; {label.text!r} already labels this app",
                    name.position,
                )
        return AppNode(
            name.text,
            label.text if label else None,
            tuple(self.options()),
            (label or name).position,
        )

    def options(self) -> list[Option]:
        if self.at(Kind.DOUBLE_MINUS) and self.adjacent():
            raise self.fail(
                "EXPECTED_WHITESPACE_AFTER_APP_BEFORE_ARGUMENT", "expected a space before '--'"
            )
        options: list[Option] = []
        seen: set[str] = set()
        while self.at(Kind.DOUBLE_MINUS):
            self.i += 1
            if self.at(Kind.IDENT) and not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_BEFORE_ARG_NAME", "expected no space between '--' and the name"
                )
            first = self.eat(Kind.IDENT, "an option name after '--'")
            key = self.dotted_name(first.text)
            if self.at(Kind.EQUALS) and not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_BEFORE_ARG_EQUALS",
                    f"expected no space between '--{key}' and '='",
                )
            equals = self.eat(Kind.EQUALS, f"'=' and a value after '--{key}'")
            gap = self.text[equals.end : self.tok.position]
            if "\n" in gap:  # SCDF reads a line break after '=' as the (missing) value
                raise self.fail(
                    "EXPECTED_ARGUMENT_VALUE",
                    f"expected a value after '--{key}=', found the end of the line",
                    equals.end + gap.index("\n"),
                )
            if self.tok.kind in _VALUES and not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_BEFORE_ARG_VALUE",
                    f"expected no space between '--{key}=' and the value (quote a value that "
                    "starts with a space)",
                )
            value = self.advance(f"a value after '--{key}='")
            if value.kind not in _VALUES:
                raise self.fail(
                    "EXPECTED_ARGUMENT_VALUE",
                    f"expected a value after '--{key}=', found {_describe(value)} "
                    "(quote it to give an empty value: --key='')",
                    value.position,
                )
            if key in seen:
                raise self.fail(
                    "DUPLICATE_OPTION", f"option --{key} is given twice", first.position
                )
            seen.add(key)
            options.append(Option(key, value.text, first.position))
        return options

    def dotted_name(self, key: str) -> str:
        while self.at(Kind.DOT):
            if not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_IN_DOTTED_NAME", "expected no space before '.' in an option name"
                )
            self.i += 1
            if self.at(Kind.IDENT) and not self.adjacent():
                raise self.fail(
                    "NO_WHITESPACE_IN_DOTTED_NAME", "expected no space after '.' in an option name"
                )
            key += "." + self.eat(Kind.IDENT, "a name after '.' in the option name").text
        return key


def parse_stream(definition: str) -> StreamNode:
    """Parse one stream definition, or raise a :class:`DslError` saying where and why."""
    if len(definition) > MAX_LENGTH:
        raise DslError(
            "TOO_LONG",
            f"a definition may have at most {MAX_LENGTH} characters",
            definition,
            MAX_LENGTH,
        )
    return _Parser(definition, tokenize(definition)).parse()
