"""The composed-task DSL's parser: text in, a :class:`Definition` out, or a :class:`TaskDslError`.

Grammar (Spring Cloud Data Flow's composed-task language)::

    definition := flow ( (';' | line break) flow )* END
    flow       := element ( '&&' element )*
    element    := ( label ':' )? ( split | app )
    split      := '<' flow ( '||' flow )* '>'
    app        := name ( '--' key ( '.' key )* '=' value )* transition*
    transition := ( exit-code | '*' | 'STATUS' ) '->' ( ':' label | '$END' | '$FAIL' | app )

A transition's app takes arguments but no transitions of its own; after it runs
the flow it interrupted ends. Parsing also validates what SCDF validates: labels
are unique and defined, the same app twice needs a label, a secondary sequence
needs a label to be reachable.

>>> [s.step for s in parse_definition("a && <b || x: b>").apps()]
['a', 'b', 'x']
"""

from __future__ import annotations

import re

from conveyor._dsl import Cursor
from conveyor.tasks.dsl.messages import Message, fail
from conveyor.tasks.dsl.nodes import (
    END,
    FAIL,
    App,
    Argument,
    Definition,
    Element,
    Flow,
    Split,
    Transition,
)
from conveyor.tasks.dsl.tokens import Kind, Token, tokenize, unquote
from conveyor.tasks.dsl.validate import check_definition
from conveyor.tasks.errors import TaskDslError

__all__ = ["MAX_LENGTH", "check_task_name", "parse_definition"]

#: Longest definition accepted; definitions arrive over an API.
MAX_LENGTH = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*\Z")
_EXIT_CODE = re.compile(r"[0-9]+\Z")


def check_task_name(name: str) -> str:
    """Return ``name`` if it can name a task, else raise SCDF's error 123."""
    if not _TASK_NAME.match(name):
        raise fail(Message.ILLEGAL_TASK_NAME, name, 0, name)
    return name


def _shown(token: Token) -> str:
    return "the end of the definition" if token.kind is Kind.END else repr(token.text)


class _Parser(Cursor[Token]):
    def take(self) -> Token:
        token = self.tok
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def expect(self, kind: Kind, what: str) -> Token:
        token = self.tok
        if token.kind is Kind.END:
            raise fail(Message.OOD, self.text, token.start, what)
        if token.kind is not kind:
            raise fail(Message.NOT_EXPECTED_TOKEN, self.text, token.start, what, _shown(token))
        return self.take()

    def adjacent(self) -> bool:
        return self.i > 0 and self.tokens[self.i - 1].end == self.tok.start

    # definition := flow ( (';' | line break) flow )* END
    def parse(self) -> Definition:
        if len(self.text) > MAX_LENGTH:
            raise TaskDslError(
                112,
                "definition-too-long",
                f"the definition is {len(self.text)} characters; expected at most {MAX_LENGTH}",
                self.text,
                MAX_LENGTH,
            )
        sequences = [self.flow()]
        while not self.at(Kind.END):
            if self.at(Kind.SEMICOLON):
                self.take()
            elif self.tok.line <= self.tokens[self.i - 1].line:
                raise fail(Message.TASK_MORE_INPUT, self.text, self.tok.start, self.tok.text)
            sequences.append(self.flow())
        return Definition(tuple(sequences))

    def flow(self) -> Flow:
        elements = [self.element()]
        while self.at(Kind.ANDAND):
            self.take()
            elements.append(self.element())
        return Flow(tuple(elements))

    def label(self) -> Token | None:
        if self.at(Kind.IDENT) and self.peek().kind is Kind.COLON:
            token = self.take()
            self.take()
            if not _NAME.match(token.text):
                raise fail(Message.EXPECTED_APPNAME, self.text, token.start, repr(token.text))
            return token
        return None

    def element(self) -> Element:
        label = self.label()
        if label is not None and self.at(Kind.IDENT) and self.peek().kind is Kind.COLON:
            raise fail(Message.NO_DOUBLE_LABELS, self.text, self.tok.start)
        start = label.start if label else self.tok.start
        if self.at(Kind.LT):
            return self.split(label.text if label else None, start)
        return self.app(label, transitions=True)

    def split(self, label: str | None, start: int) -> Split:
        self.take()
        flows = [self.flow()]
        while self.at(Kind.OROR):
            self.take()
            flows.append(self.flow())
        self.expect(Kind.GT, "'||' or '>' to close the split")
        return Split(tuple(flows), label, start)

    def name(self) -> Token:
        token = self.tok
        if token.kind is Kind.END:
            raise fail(Message.OOD, self.text, token.start, "an app name")
        if token.text in (END, FAIL):
            shown = f"{token.text!r} (which only ends a transition, as in 'FAILED'->$FAIL)"
            raise fail(Message.EXPECTED_APPNAME, self.text, token.start, shown)
        if token.kind is not Kind.IDENT or not _NAME.match(token.text):
            raise fail(Message.EXPECTED_APPNAME, self.text, token.start, _shown(token))
        return self.take()

    def app(self, label: Token | None, *, transitions: bool) -> App:
        name = self.name()
        arguments = self.arguments()
        found = self.transitions() if transitions else ()
        start = label.start if label else name.start
        return App(name.text, label.text if label else None, arguments, found, start)

    # '--' key ( '.' key )* '=' value, every part touching the next
    def arguments(self) -> tuple[Argument, ...]:
        found: list[Argument] = []
        while self.at(Kind.DOUBLE_MINUS):
            if self.adjacent():
                raise fail(
                    Message.EXPECTED_WHITESPACE_AFTER_APP_BEFORE_ARGUMENT, self.text, self.tok.start
                )
            start = self.take().start
            if self.at(Kind.IDENT) and not self.adjacent():
                raise fail(Message.NO_WHITESPACE_BEFORE_ARG_NAME, self.text, self.tok.start)
            parts = [self.expect(Kind.IDENT, "an option name after '--'").text]
            while self.at(Kind.DOT):
                if not self.adjacent() or self.peek().start != self.tok.end:
                    position = self.tok.start if not self.adjacent() else self.peek().start
                    raise fail(Message.NO_WHITESPACE_IN_DOTTED_NAME, self.text, position)
                self.take()
                parts.append(self.expect(Kind.IDENT, "an option name after '.'").text)
            if self.at(Kind.EQUALS) and not self.adjacent():
                raise fail(Message.NO_WHITESPACE_BEFORE_ARG_EQUALS, self.text, self.tok.start)
            self.expect(Kind.EQUALS, "'=' and a value after the option name")
            name = ".".join(parts)
            if any(a.name == name for a in found):
                raise fail(Message.DUPLICATE_ARGUMENT, self.text, start, name)
            found.append(Argument(name, self.value(), start))
        return tuple(found)

    def value(self) -> str:
        token = self.tok
        if token.kind in (Kind.VALUE, Kind.LITERAL) and self.adjacent():
            self.take()
            return unquote(token.text) if token.kind is Kind.LITERAL else token.text
        if token.kind is Kind.END:
            raise fail(Message.OOD, self.text, token.start, "an argument value")
        if token.kind is Kind.IDENT:
            raise fail(Message.NO_WHITESPACE_BEFORE_ARG_VALUE, self.text, token.start)
        raise fail(Message.EXPECTED_ARGUMENT_VALUE, self.text, token.start, token.text)

    def transitions(self) -> tuple[Transition, ...]:
        found: list[Transition] = []
        while True:
            check = self.tok
            if check.kind is Kind.ARROW:
                raise fail(Message.TASK_ARROW_SHOULD_BE_PRECEDED_BY_CODE, self.text, check.start)
            arrow = self.peek().kind is Kind.ARROW
            if check.kind in (Kind.LITERAL, Kind.STAR) and not arrow:
                raise fail(Message.TASK_MISSING_TRANSITION_ARROW, self.text, self.peek().start)
            if check.kind not in (Kind.IDENT, Kind.LITERAL, Kind.STAR) or not arrow:
                return tuple(found)
            if check.kind is Kind.IDENT and not _EXIT_CODE.match(check.text):
                raise fail(
                    Message.TASK_UNQUOTED_TRANSITION_CHECK_MUST_BE_NUMBER,
                    self.text,
                    check.start,
                    check.text,
                )
            self.take()
            self.take()
            text = check.text
            if check.kind is Kind.LITERAL:  # canonical form: single quotes
                text = "'" + unquote(text).replace("'", "''") + "'"
            found.append(self.target(text, check.start))

    def target(self, check: str, start: int) -> Transition:
        if self.at(Kind.COLON):
            self.take()
            label = self.name()
            return Transition(check, label=label.text, position=start)
        if self.at(Kind.IDENT) and self.tok.text in (END, FAIL):
            return Transition(check, ending=self.take().text, position=start)
        return Transition(check, app=self.app(self.label(), transitions=False), position=start)


def parse_definition(text: str, *, validate: bool = True) -> Definition:
    """Parse (and by default validate) a composed-task definition."""
    definition = _Parser(text, tokenize(text)).parse()
    if validate:
        check_definition(definition, text)
    return definition
