"""The stream DSL: what parses to what, what fails and how the error reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.streams.dsl import (
    AppNode,
    Destination,
    DslError,
    Option,
    StreamNode,
    parse_stream,
    to_text,
)


def test_pipe_with_quoted_and_unquoted_values() -> None:
    tree = parse_stream(
        "http --path=/tx | filter --expression='amount > 0' | score --model=run:abc/model | log"
    )
    assert [a.name for a in tree.apps] == ["http", "filter", "score", "log"]
    assert tree.apps[0].option_map() == {"path": "/tx"}
    assert tree.apps[1].option_map() == {"expression": "amount > 0"}
    assert tree.apps[2].option_map() == {"model": "run:abc/model"}
    assert tree.source is None
    assert tree.sink is None


def test_double_quotes_and_doubled_quote_escape() -> None:
    tree = parse_stream("""transform --expression="name + 'x'" --note='it''s' | log""")
    assert tree.apps[0].option_map() == {"expression": "name + 'x'", "note": "it's"}


@pytest.mark.parametrize(
    ("definition", "value"),
    [
        ("time --fmt=a|log", "a"),
        ("time --fmt=a>:out", "a"),
        ("time --fmt=a;b | log", None),
        ("time --fmt=a=b:c/d | log", "a=b:c/d"),
    ],
)
def test_unquoted_value_runs_to_space_pipe_semicolon_or_gt(
    definition: str, value: str | None
) -> None:
    if value is None:
        with pytest.raises(DslError) as info:
            parse_stream(definition)
        assert info.value.code == "UNEXPECTED_DATA_AFTER_STREAMDEF"
        assert info.value.position == definition.index(";")
    else:
        assert parse_stream(definition).apps[0].option_map()["fmt"] == value


def test_labels_taps_and_named_destinations() -> None:
    tap = parse_stream(":fraud.score > audit: file --path=audit.jsonl")
    assert tap.source == Destination("fraud.score")
    assert tap.source.is_tap
    assert tap.apps == (AppNode("file", "audit", (Option("path", "audit.jsonl"),)),)

    named = parse_stream(":orders > enrich: python --function=mypkg.enrich:handle > :enriched")
    assert named.source == Destination("orders")
    assert not named.source.is_tap
    assert named.sink == Destination("enriched")
    # The spelling, '| :dest', means the same.
    assert (
        parse_stream(":orders > enrich: python --function=mypkg.enrich:handle | :enriched") == named
    )


def test_bridge_and_stream_name() -> None:
    assert parse_stream(":a > :b") == StreamNode((), Destination("a"), Destination("b"))
    assert parse_stream("fraud = time | log").name == "fraud"


def test_same_app_twice_needs_a_label() -> None:
    with pytest.raises(DslError) as info:
        parse_stream("time | filter --expression=a | filter --expression=b | log")
    assert info.value.code == "DUPLICATE_LABEL"
    assert "give one a label" in str(info.value)
    parse_stream("time | filter --expression=a | second: filter --expression=b | log")
    with pytest.raises(DslError) as dup:
        parse_stream("time | x: filter --expression=a | x: transform --expression=b | log")
    assert dup.value.code == "DUPLICATE_LABEL"


@pytest.mark.parametrize(
    ("definition", "code", "position", "expected"),
    [
        ("", "OOD", 0, "expected an app name"),
        ("http | | log", "EXPECTED_APPNAME", 7, "expected an app name, found '|'"),
        ("http | filter --expression='a > 0", "NON_TERMINATING_QUOTED_STRING", 27, "closing '"),
        ("http --path= | log", "EXPECTED_ARGUMENT_VALUE", 13, "a value after '--path='"),
        ("http --path= x | log", "NO_WHITESPACE_BEFORE_ARG_VALUE", 13, "no space between"),
        ("http --path=| log", "EXPECTED_ARGUMENT_VALUE", 12, "expected an option value"),
        ("http --path x | log", "NOT_EXPECTED_TOKEN", 12, "'=' and a value after '--path'"),
        ("http -- | log", "NOT_EXPECTED_TOKEN", 8, "an option name after '--'"),
        ("http --a=1 --a=2 | log", "DUPLICATE_OPTION", 13, "given twice"),
        (":in log", "EXPECTED_APPNAME", 0, "an input destination is written ':name > app'"),
        ("http > log", "EXPECTED_DESTINATION_PREFIX", 7, "write '> :log'"),
        ("http | log > :out extra", "UNEXPECTED_DATA_AFTER_STREAMDEF", 18, "or the end"),
        ("http | l%g", "UNEXPECTED_DATA", 8, "'%'"),
        (
            "http path | log",
            "UNEXPECTED_DATA_AFTER_STREAMDEF",
            5,
            "options are written --key=value",
        ),
        (":a > :a", "BRIDGE_TO_ITSELF", 6, "two different destinations"),
        ("3x = http | log", "ILLEGAL_STREAM_NAME", 0, "expected a stream name"),
        ("http | foo:bar", "EXPECTED_WHITESPACE_AFTER_LABEL_COLON", 11, "a space after the label"),
        ("http | log -x", "MISSING_CHARACTER", 11, "'--'"),
        ("http | lo\\g", "UNEXPECTED_ESCAPE_CHAR", 9, "quote a value"),
        (":", "EXPECTED_STREAM_NAME_AFTER_LABEL_COLON", 0, "expected an app name"),
        (":a/--x=1 > log", "EXPECTED_WHITESPACE_AFTER_APP_BEFORE_ARGUMENT", 3, "a space before"),
        ("http > :foo.", "OOD", 12, "the rest of the destination name"),
        ("a || b > :c", "DONT_USE_DOUBLEPIPE_WITH_CHANNELS", 2, "'||' joins"),
        ("http | log; time | log", "UNEXPECTED_DATA_AFTER_STREAMDEF", 10, "one stream per"),
    ],
)
def test_errors_name_code_position_and_expectation(
    definition: str, code: str, position: int, expected: str
) -> None:
    with pytest.raises(DslError) as info:
        parse_stream(definition)
    error = info.value
    assert (error.code, error.position) == (code, position)
    assert expected in str(error)
    # The definition is shown with a caret under the position.
    lines = str(error).splitlines()
    assert lines[1] == f"  {definition}"
    assert lines[2] == "  " + " " * position + "^"


def test_caret_on_the_right_line_of_a_multi_line_definition() -> None:
    with pytest.raises(DslError) as info:
        parse_stream("time\n| log |")
    assert str(info.value).splitlines()[1:] == ["  | log |", "         ^"]


# --- property-based -------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
_keys = st.from_regex(r"[a-z][a-z0-9_-]{0,5}(\.[a-z0-9_][a-z0-9_$-]{0,5}){0,2}", fullmatch=True)
_dests = st.from_regex(r"[a-z0-9_*/#][a-z0-9_*/#]{0,5}(\.[a-z0-9_*/#]{1,6}){0,2}", fullmatch=True)


@st.composite
def _options(draw: st.DrawFn) -> tuple[Option, ...]:
    keys = draw(st.lists(_keys, max_size=3, unique=True))
    return tuple(Option(k, draw(st.text(max_size=12))) for k in keys)


@st.composite
def _destinations(draw: st.DrawFn) -> Destination:
    return Destination(draw(_dests), options=draw(st.just(()) | _options()))


@st.composite
def _apps(draw: st.DrawFn) -> tuple[AppNode, ...]:
    count = draw(st.integers(1, 4))
    apps = []
    used: set[str] = set()
    for _ in range(count):
        name = draw(_names)
        label = draw(st.none() | _names)
        if (label or name) in used:
            label = draw(_names.filter(lambda n: n not in used))
        used.add(label or name)
        apps.append(AppNode(name, label, draw(_options())))
    return tuple(apps)


@st.composite
def _streams(draw: st.DrawFn) -> StreamNode:
    name = draw(st.none() | _names)
    source = draw(st.none() | _destinations())
    sink = draw(st.none() | _destinations())
    bridge = source is not None and sink is not None and source.name != sink.name
    if bridge and draw(st.booleans()):
        return StreamNode((), source, sink, name)
    apps = draw(_apps())
    unbound = source is None and sink is None and len(apps) > 1 and draw(st.booleans())
    return StreamNode(apps, source, sink, name, unbound)


@settings(max_examples=300, deadline=None)
@given(_streams())
def test_printing_and_parsing_again_gives_the_same_tree(tree: StreamNode) -> None:
    assert parse_stream(to_text(tree)) == tree


_dsl_alphabet = st.sampled_from(list("ab:|>-=;'\" \n.xyz09_\t\\%*/#$"))


@settings(max_examples=500, deadline=None)
@given(st.text(_dsl_alphabet, max_size=40) | st.text(max_size=40))
def test_any_text_yields_a_tree_or_a_dsl_error(text: str) -> None:
    try:
        tree = parse_stream(text)
    except DslError as error:
        failure: DslError | None = error
    else:
        failure = None
        assert parse_stream(to_text(tree)) == tree
    if failure is not None:
        assert 0 <= failure.position <= len(text)
        assert failure.code
        assert "^" in str(failure)
