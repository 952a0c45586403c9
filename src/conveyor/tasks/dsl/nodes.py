"""The composed-task syntax tree, and its canonical text.

A definition is one or more sequences (separated by ``;`` or a line break); the
first runs, the others are reached only by a transition to their label. A
sequence is a :class:`Flow` of elements run one after another; an element is an
:class:`App` or a :class:`Split` of flows run side by side::

    prepare && <gbm: train --model=gbm || rf: train --model=rf> && evaluate 'FAILED'->alert

``to_text`` writes the canonical form (single spaces, values quoted only where
needed); parsing it gives the same tree back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from conveyor._dsl import quote_value

__all__ = [
    "END",
    "FAIL",
    "App",
    "Argument",
    "Definition",
    "Element",
    "Flow",
    "Split",
    "Transition",
    "quote_value",
    "to_text",
]

#: Transition targets that end the execution: successfully, or as failed.
END = "$END"
FAIL = "$FAIL"


@dataclass(frozen=True)
class Argument:
    name: str
    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Transition:
    """``check->target``: taken when the step's exit code or exit status matches ``check``.

    ``check`` is the DSL form: ``0`` or ``*`` test the exit code, ``'FAILED'`` (quoted)
    the exit status. The target is an app run instead of the rest of the flow, a
    reference to a label (``->:label``), or ``$END`` / ``$FAIL``.
    """

    check: str
    app: App | None = None
    label: str | None = None
    ending: str | None = None
    position: int = field(default=0, compare=False)

    @property
    def on_exit_code(self) -> bool:
        return not self.check.startswith("'")

    def matches(self, exit_code: int, exit_status: str) -> bool:
        """Whether a step that exited with this code and status takes the transition."""
        if self.on_exit_code:
            return self.check == "*" or self.check == str(exit_code)
        wanted = self.check[1:-1].replace("''", "'")
        return wanted in ("*", exit_status)


@dataclass(frozen=True)
class App:
    name: str
    label: str | None = None
    arguments: tuple[Argument, ...] = ()
    transitions: tuple[Transition, ...] = ()
    position: int = field(default=0, compare=False)

    @property
    def step(self) -> str:
        """The step's name within its task: its label, else its app name."""
        return self.label or self.name


@dataclass(frozen=True)
class Split:
    flows: tuple[Flow, ...]
    label: str | None = None
    position: int = field(default=0, compare=False)


Element = App | Split


@dataclass(frozen=True)
class Flow:
    elements: tuple[Element, ...]

    @property
    def label(self) -> str | None:
        return self.elements[0].label

    @property
    def position(self) -> int:
        return self.elements[0].position


@dataclass(frozen=True)
class Definition:
    sequences: tuple[Flow, ...]

    @property
    def main(self) -> Flow:
        return self.sequences[0]

    def apps(self) -> Iterator[App]:
        """Every app of the definition, transition targets included, in text order."""
        for sequence in self.sequences:
            yield from _apps(sequence)

    def steps(self) -> dict[str, App]:
        """Each step's name (label or app name) -> its app."""
        return {app.step: app for app in self.apps()}

    def labelled(self) -> dict[str, Element]:
        """Each label -> the element it names."""
        found: dict[str, Element] = {}
        for sequence in self.sequences:
            for element in _elements(sequence):
                if element.label:
                    found[element.label] = element
        return found


def _elements(flow: Flow) -> Iterator[Element]:
    for element in flow.elements:
        yield element
        if isinstance(element, Split):
            for inner in element.flows:
                yield from _elements(inner)
        else:
            for transition in element.transitions:
                if transition.app is not None:
                    yield transition.app


def _apps(flow: Flow) -> Iterator[App]:
    for element in _elements(flow):
        if isinstance(element, App):
            yield element


def _label(label: str | None) -> str:
    return f"{label}: " if label else ""


def _transition_text(transition: Transition) -> str:
    if transition.app is not None:
        target = _app_text(transition.app)
    elif transition.label is not None:
        target = f":{transition.label}"
    else:
        target = transition.ending or END
    return f"{transition.check}->{target}"


def _app_text(app: App) -> str:
    parts = [_label(app.label) + app.name]
    parts += [f"--{a.name}={quote_value(a.value)}" for a in app.arguments]
    parts += [_transition_text(t) for t in app.transitions]
    return " ".join(parts)


def _element_text(element: Element) -> str:
    if isinstance(element, App):
        return _app_text(element)
    return _label(element.label) + "<" + " || ".join(_flow_text(f) for f in element.flows) + ">"


def _flow_text(flow: Flow) -> str:
    return " && ".join(_element_text(e) for e in flow.elements)


def to_text(definition: Definition) -> str:
    """The canonical text of a definition (sequences separated by ``; ``)."""
    return "; ".join(_flow_text(s) for s in definition.sequences)
