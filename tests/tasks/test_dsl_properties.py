"""Properties of the composed-task DSL, over generated text and generated definitions.

Any text yields a definition or a :class:`TaskDslError` (never another exception);
a valid definition's text goes to a graph and back to the same text.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.tasks.dsl import (
    END,
    FAIL,
    App,
    Argument,
    Definition,
    Element,
    Flow,
    Graph,
    Split,
    TaskDslError,
    Transition,
    from_graph,
    parse_definition,
    to_graph,
    to_text,
)

#: Characters the DSL gives meaning to, so random text often gets far into the parser.
_ALPHABET = st.sampled_from(list("ab0 \t\n&|<>-:;='\"*.$_\\é")) | st.characters()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(_ALPHABET, max_size=40))
def test_any_text_parses_or_raises_a_dsl_error(text: str) -> None:
    error: TaskDslError | None = None
    try:
        definition = parse_definition(text)
    except TaskDslError as raised:
        error = raised
    if error is None:
        assert parse_definition(to_text(definition)) == definition
    else:
        assert 0 <= error.position <= len(text)
        assert str(error).startswith(f"{error.code}E:(pos {error.position}): ")


_VALUES = st.text(st.sampled_from(list("ab1 '\"|;>-=&*")), max_size=6)
_CHECKS = st.sampled_from(["0", "1", "*", "'FAILED'", "'COMPLETED'", "'*'", "'it''s'"])


@st.composite
def definitions(draw: st.DrawFn) -> Definition:
    """A valid definition: every app a fresh name or label, every jump to a real label."""
    counter = iter(range(10_000))
    labels: list[str] = []

    def fresh(prefix: str) -> str:
        return f"{prefix}{next(counter)}"

    def app(transitions: bool) -> App:
        label = fresh("l") if draw(st.booleans()) else None
        name = draw(st.sampled_from(["shell", "timestamp"])) if label else fresh("app-")
        names = draw(st.lists(st.sampled_from(["x", "y.z", "n_1"]), max_size=2, unique=True))
        arguments = tuple(Argument(name, draw(_VALUES)) for name in names)
        found: list[Transition] = []
        for _ in range(draw(st.integers(0, 2)) if transitions else 0):
            check = draw(_CHECKS)
            kind = draw(st.sampled_from(["app", "label", "end", "fail"]))
            if kind == "app":
                found.append(Transition(check, app=app(False)))
            elif kind == "label":
                found.append(Transition(check, label="JUMP"))
            else:
                found.append(Transition(check, ending=END if kind == "end" else FAIL))
        if label:
            labels.append(label)
        return App(name, label, arguments, tuple(found))

    def element(depth: int) -> Element:
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            label = fresh("s") if draw(st.booleans()) else None
            if label:
                labels.append(label)
            count = draw(st.integers(2, 3))
            return Split(tuple(flow(depth + 1) for _ in range(count)), label)
        return app(True)

    def flow(depth: int) -> Flow:
        return Flow(tuple(element(depth) for _ in range(draw(st.integers(1, 3)))))

    main = flow(0)
    extra = []
    for _ in range(draw(st.integers(0, 2))):
        head = app(True)
        head = App(head.name, head.label or fresh("q"), head.arguments, head.transitions)
        labels.append(head.label or "")
        rest = [element(1) for _ in range(draw(st.integers(0, 2)))]
        extra.append(Flow((head, *rest)))
    text = to_text(Definition((main, *extra)))
    # Point every placeholder jump at a label drawn from the ones defined.
    targets = labels or ["nowhere"]
    while ":JUMP" in text:
        text = text.replace(":JUMP", ":" + draw(st.sampled_from(targets)), 1)
    if not labels:
        text = text.replace("->:nowhere", "->$END")
    return parse_definition(text)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(definitions())
def test_text_to_graph_to_text_is_the_identity(definition: Definition) -> None:
    text = to_text(definition)
    graph = Graph.from_json(to_graph(parse_definition(text)).to_json())
    assert to_text(from_graph(graph)) == text
    assert from_graph(graph) == definition
