"""What SCDF's task validator checks once a definition has parsed.

Every step must be reachable and nameable: a secondary sequence starts with a
label, labels are unique and defined where a transition names them, an app used
twice is labelled, and a split has at least two flows.
"""

from __future__ import annotations

from conveyor.tasks.dsl.messages import Message, fail
from conveyor.tasks.dsl.nodes import App, Definition, Element, Flow, Split

__all__ = ["check_definition"]


def _walk(flow: Flow) -> list[Element]:
    """Every element of ``flow`` in text order, transition targets after their source."""
    found: list[Element] = []
    for element in flow.elements:
        found.append(element)
        if isinstance(element, Split):
            for inner in element.flows:
                found += _walk(inner)
        else:
            found += [t.app for t in element.transitions if t.app is not None]
    return found


def check_definition(definition: Definition, text: str) -> None:
    """Raise the first problem SCDF's validator would report, at its position."""
    for sequence in definition.sequences[1:]:
        if sequence.label is None:
            raise fail(
                Message.TASK_VALIDATION_SECONDARY_SEQUENCES_MUST_BE_NAMED, text, sequence.position
            )
    elements = [e for sequence in definition.sequences for e in _walk(sequence)]
    labels: set[str] = set()
    unlabelled: set[str] = set()
    for element in elements:
        if isinstance(element, Split) and len(element.flows) < 2:
            raise fail(Message.TASK_VALIDATION_SPLIT_WITH_ONE_FLOW, text, element.position)
        if element.label is not None:
            if element.label in labels:
                raise fail(
                    Message.TASK_VALIDATION_DUPLICATE_LABEL, text, element.position, element.label
                )
            if element.label in unlabelled:
                raise fail(
                    Message.TASK_VALIDATION_LABEL_CLASHES_WITH_TASKAPP_NAME,
                    text,
                    element.position,
                    element.label,
                )
            labels.add(element.label)
        elif isinstance(element, App):
            if element.name in unlabelled:
                raise fail(
                    Message.TASK_VALIDATION_APP_NAME_ALREADY_IN_USE,
                    text,
                    element.position,
                    element.name,
                )
            if element.name in labels:
                raise fail(
                    Message.TASK_VALIDATION_APP_NAME_CLASHES_WITH_LABEL,
                    text,
                    element.position,
                    element.name,
                )
            unlabelled.add(element.name)
    known = ", ".join(sorted(labels)) or "(no labels defined)"
    for element in elements:
        if isinstance(element, App):
            for transition in element.transitions:
                if transition.label is not None and transition.label not in labels:
                    raise fail(
                        Message.TASK_VALIDATION_TRANSITION_TARGET_LABEL_UNDEFINED,
                        text,
                        transition.position,
                        transition.label,
                        known,
                    )
