"""The composed-task DSL: SCDF's documented examples, its error codes and positions, the graph."""

from __future__ import annotations

import pytest

from conveyor.tasks.dsl import (
    END,
    FAIL,
    App,
    Graph,
    Split,
    TaskDslError,
    check_task_name,
    from_graph,
    parse_definition,
    to_graph,
    to_text,
)
from conveyor.tasks.errors import TaskError


def _apps(text: str) -> list[str]:
    return [app.step for app in parse_definition(text).apps()]


def _graph(text: str) -> str:
    """SCDF's compact graph notation, for comparing shapes at a glance."""
    graph = to_graph(parse_definition(text))
    nodes = "".join(f"[{n.id}:{n.label + ':' if n.label else ''}{n.name}]" for n in graph.nodes)
    links = "".join(
        f"[{(k.on + ':') if k.on else ''}{k.source}-{k.target}{'L' if k.to_label else ''}]"
        for k in graph.links
    )
    return nodes + links


# Definitions from SCDF's composed-task documentation and its parser's tests.
DOCUMENTED = [
    "task-a && task-b && task-c",
    "<task-a || task-b || task-c>",
    "<task-a || task-b || task-c> && task-d",
    "task-a && <task-b || task-c> && task-d",
    "<task-a && task-b || task-c && task-d>",
    "task-a 'FAILED'->task-b 'COMPLETED'->task-c",
    "task-a 'FAILED'->task-b '*'->task-c",
    "task-a 0->task-b 1->task-c && task-d",
    "task-a 'FAILED'->task-b && task-c",
    "AAA && FFF 'FAILED'->EEE && <BBB || CCC> && DDD",
    "<<appA && appD || appE> || appB>",
    "<A || <B && C || D>>",
    "appA && goo: appA",
    "aaa: appA && bbb: appA",
    "appA 'fail'->:two && appB && appC; two: appD && appE",
    "appA 'fail'->:two && appB; two: appD 'fail2'->:three && appE; three: appF && appG",
    "timestamp 'FAILED'->$FAIL '*'->$END && next",
    "prepare && <train-gbm: train --model=gbm || train-rf: train --model=rf> && evaluate"
    " 'FAILED'->alert",
]


@pytest.mark.parametrize("text", DOCUMENTED)
def test_documented_definitions_parse_and_survive_the_graph(text: str) -> None:
    definition = parse_definition(text)
    assert to_text(definition) == text
    assert from_graph(Graph.from_json(to_graph(definition).to_json())) == definition


def test_one_app_with_arguments_in_scdf_quoting() -> None:
    app = parse_definition(
        "gemfire-cq --query='Select * from /Stocks where symbol=''VMW''' --regionName=foo"
    ).main.elements[0]
    assert isinstance(app, App)
    assert {a.name: a.value for a in app.arguments} == {
        "query": "Select * from /Stocks where symbol='VMW'",
        "regionName": "foo",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("transform --expression=--payload", "--payload"),
        (
            "transform --expression='new StringBuilder(payload).reverse()'",
            "new StringBuilder(payload).reverse()",
        ),
        ("transform --expression=\"'Hello, world!'\"", "'Hello, world!'"),
        ("transform --expression='''Hello, world!'''", "'Hello, world!'"),
        ("filter --expression=\"payload == 'foo'\"", "payload == 'foo'"),
        ("transform --expression='payload.replace(\"abc\", '''')'", "payload.replace(\"abc\", '')"),
        ("foo --x=1a2b", "1a2b"),
        ("foo --x=''", ""),
    ],
)
def test_argument_values_follow_scdf(text: str, value: str) -> None:
    app = parse_definition(text).main.elements[0]
    assert isinstance(app, App)
    assert app.arguments[0].value == value
    # and the canonical text reads back to the same value
    assert parse_definition(to_text(parse_definition(text))) == parse_definition(text)


def test_flows_splits_labels_and_transitions_have_their_shape() -> None:
    definition = parse_definition("a && <b && c || x: b> && d 'FAILED'->e 0->:x *->$END")
    _, split, last = definition.main.elements
    assert isinstance(split, Split)
    assert [[e.label or e.name for e in f.elements if isinstance(e, App)] for f in split.flows] == [
        ["b", "c"],
        ["x"],
    ]
    assert isinstance(last, App)
    checks = [(t.check, t.on_exit_code) for t in last.transitions]
    assert checks == [("'FAILED'", False), ("0", True), ("*", True)]
    assert last.transitions[0].app == App("e")
    assert last.transitions[1].label == "x"
    assert last.transitions[2].ending == END
    assert _apps("a && <b && c || x: b> && d 'FAILED'->e") == ["a", "b", "c", "x", "d", "e"]


def test_transitions_match_exit_codes_and_statuses() -> None:
    app = parse_definition("a 'NO_DATA'->b 3->c '*'->d").main.elements[0]
    assert isinstance(app, App)
    by_status, by_code, anything = app.transitions
    assert by_status.matches(0, "NO_DATA")
    assert not by_status.matches(0, "COMPLETED")
    assert by_code.matches(3, "FAILED")
    assert not by_code.matches(1, "FAILED")
    assert anything.matches(9, "FAILED")


def test_whitespace_and_line_breaks() -> None:
    assert to_text(parse_definition("FooApp  &&  BarApp")) == "FooApp && BarApp"
    assert to_text(parse_definition("FooApp &&\nBarApp")) == "FooApp && BarApp"
    assert to_text(parse_definition("FooApp\n&& BarApp")) == "FooApp && BarApp"
    assert to_text(parse_definition("<\nFooApp ||\nBarApp\n>")) == "<FooApp || BarApp>"
    assert to_text(parse_definition("FooApp\n 0\n->:a\n 1->:b\n &&\nBarApp\na: x\nb: y")) == (
        "FooApp 0->:a 1->:b && BarApp; a: x; b: y"
    )
    assert to_text(parse_definition("App1 0->App2 'abc' ->   App3")) == "App1 0->App2 'abc'->App3"


def test_graph_has_nodes_and_links_a_dashboard_draws() -> None:
    assert (
        _graph("appA 'foo'->appB") == "[0:START][1:END][2:appA][3:appB][0-2]['foo':2-3][3-1][2-1]"
    )
    assert _graph("<a || b> && c") == (
        "[0:START][1:END][2:SPLIT][3:SYNC][4:a][5:b][6:c][0-2][2-4][4-3][2-5][5-3][3-6][6-1]"
    )
    assert _graph("a 'f'->:two && b; two: c") == (
        "[0:START][1:END][2:a][3:b][4:two:c][0-2]['f':2-4L][2-3][3-1][4-1]"
    )
    assert _graph("a 1->$FAIL") == "[0:START][1:END][2:a][3:FAIL][0-2][1:2-3][2-1]"


@pytest.mark.parametrize(
    "graph",
    [
        {"nodes": [{"id": 0, "kind": "start"}]},
        {"nodes": "x"},
        {
            "nodes": [{"id": 0, "kind": "start"}, {"id": 1, "kind": "end"}],
            "links": [{"source": 0, "target": 7}],
        },
        {
            "nodes": [{"id": 0, "kind": "start"}, {"id": 1, "kind": "app", "name": "a"}],
            "links": [{"source": 0, "target": 1}, {"source": 1, "target": 1}],
        },
        {"nodes": [{"id": 0, "kind": "start"}, {"id": 1, "kind": "wormhole"}]},
    ],
)
def test_a_graph_no_definition_draws_is_refused_with_a_reason(graph: object) -> None:
    with pytest.raises(TaskError, match="graph: "):
        from_graph(Graph.from_json(graph))


# (definition, SCDF message code, 0-based position) -- positions as SCDF reports them.
ERRORS = [
    ("", 112, 0),
    (".", 118, 0),
    (";", 118, 0),
    ("foo bar", 163, 4),
    ("foo bar=yyy", 163, 4),
    ("aaa --bbb= --ccc=ddd", 105, 11),
    ("aaa --bbb=| --ccc=ddd", 105, 10),
    ("aaa --bbb=; --ccc=ddd", 105, 10),
    ("aaa --bbb=> --ccc=ddd", 105, 10),
    ("aaa --bbb=\t --ccc=ddd", 105, 12),
    ("aaa --bbb=\n --ccc=ddd", 105, 12),
    ("foo --", 112, 6),
    ("foo --bar", 112, 9),
    ("foo --bar=", 112, 10),
    ("|", 151, 0),
    ("a & b", 150, 2),
    ("a - b", 152, 2),
    ("foo -- name=value", 101, 7),
    ("foo --name =value", 102, 11),
    ("foo --name= value", 103, 12),
    ("foo --name.=value", 111, 11),
    ("foo --name .sub=value", 145, 11),
    ("foo --name. sub=value", 145, 12),
    ("timestamp --format='YYYY", 107, 19),
    ('timestamp --format="YYYY', 106, 19),
    ("transform --expression=''Hello, world!''", 162, 37),
    ("a \\ b", 114, 2),
    ("a FAILED->b", 154, 2),
    ("a ->b", 157, 2),
    ("a 'x' b", 153, 6),
    ("a: b: c", 156, 3),
    ("a;b", 158, 2),
    ("a: x && a: y", 159, 8),
    ("aa 'foo'->:split && bb && cc", 160, 3),
    ("<aa 'foo'->:split && bb && cc || dd>", 160, 4),
    ("a && a: b", 164, 5),
    ("b: x && b", 165, 8),
    ("a && a", 166, 5),
    ("<a>", 167, 0),
    ("a && $END", 118, 5),
    ("<a || b", 112, 7),
    ("a --x=1 --x=2", 149, 8),
]


@pytest.mark.parametrize(("text", "code", "position"), ERRORS)
def test_errors_carry_scdf_codes_positions_and_a_caret(text: str, code: int, position: int) -> None:
    with pytest.raises(TaskDslError) as caught:
        parse_definition(text)
    error = caught.value
    assert (error.code, error.position) == (code, position), str(error)
    first, _line, caret = str(error).split("\n")
    assert first.startswith(f"{code}E:(pos {position}): ")
    assert caret.endswith("^")


def test_an_error_says_what_was_expected() -> None:
    with pytest.raises(TaskDslError, match=r"expected '\|\|' or '>' to close the split"):
        parse_definition("<a || b")
    with pytest.raises(TaskDslError, match="expected one of: two"):
        parse_definition("a 'x'->:tow; two: b")
    with pytest.raises(TaskDslError, match=r"only ends a transition"):
        parse_definition("$FAIL")


def test_task_names_follow_scdf() -> None:
    for bad in ["foo.bar", "-bar", ".bar", "foo-.-bar", "0foobar", "foo%bar", ""]:
        with pytest.raises(TaskDslError) as caught:
            check_task_name(bad)
        assert caught.value.code == 123
    assert check_task_name("foo-bar") == "foo-bar"
    assert check_task_name("foo_bar") == "foo_bar"


def test_an_overlong_definition_is_refused() -> None:
    with pytest.raises(TaskDslError, match="expected at most"):
        parse_definition("a && " * 20000 + "b")


def test_endings_are_transition_targets() -> None:
    app = parse_definition("a 'x'->$FAIL").main.elements[0]
    assert isinstance(app, App)
    assert app.transitions[0].ending == FAIL
