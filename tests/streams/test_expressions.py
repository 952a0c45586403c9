"""The safe expression language: what it computes, what it refuses, and how it fails."""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.streams.errors import ExpressionError
from conveyor.streams.expressions import FUNCTIONS, Limits, compile_expression

ROW = {
    "amount": 120.5,
    "country": "FR",
    "tags": ["a", "b"],
    "user": {"name": "Ada", "age": 36},
    "note": None,
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("amount > 100", True),
        ("amount * 2 - 1", 240.0),
        ("amount // 100 + 7 % 4 ** 1", 4.0),
        ("-amount < 0 < amount", True),
        ("country in ['FR', 'DE'] and not 'c' in tags", True),
        ("country not in ('US',)", True),
        ("user.name + '!'", "Ada!"),
        ("user['age'] >= 18", True),
        ("tags[-1]", "b"),
        ("note is None", True),
        ("'big' if amount > 1000 else 'small'", "small"),
        ("{'c': lower(country), 'n': len(tags)}", {"c": "fr", "n": 2}),
        ("get(payload, 'missing', 0) + round(amount)", 120),
        ("headers['id']", "h1"),
        ("max(1, 2, 3) == 3 or 1 / 0", True),
        ("startswith(user.name, 'A') and contains(tags, 'a')", True),
        ("join('-', split('a b c'))", "a-b-c"),
    ],
)
def test_values(text: str, value: Any) -> None:
    assert compile_expression(text).evaluate(ROW, {"id": "h1"}) == value


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("__import__('os').system('id')", "only named functions can be called"),
        ("open('/etc/passwd')", "function 'open' is not available"),
        ("user.name.upper()", "only named functions can be called"),
        ("(lambda: 1)()", "only named functions can be called"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in tags]", "ListComp is not allowed"),
        ("amount << 2", "operator LShift is not allowed"),
        ("amount is 3", "'is' compares with None only"),
        ("b'bytes'", "a bytes literal is not allowed"),
        ("tags[0:1]", "slices are not allowed"),
        ("len(*tags)", "positional arguments only"),
        ("amount = 3", "is not valid"),
        ("f'{amount}'", "JoinedStr is not allowed"),
        ("a\x00b", "is not valid"),
        ("-" * 100 + "1", "nesting deeper than"),
        ("1" + "+1" * 5000, "at most 4096 characters"),
    ],
)
def test_refusals_name_what_is_not_allowed(text: str, refusal: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert refusal in str(info.value)


@pytest.mark.parametrize(
    ("text", "failure"),
    [
        ("missing > 1", "field 'missing' is missing from the message"),
        ("user.email", "no key 'email'"),
        ("amount / 0", "division by zero"),
        ("country + 1", "can only concatenate"),
        ("note * 10 ** 9", "unsupported operand"),
        ("country * 10 ** 9", "the value built would hold about 3000000000 units"),
        ("amount ** 2 + round(amount) ** 100000", "the integer built would have about"),
        ("tags[5]", "list index out of range"),
    ],
)
def test_evaluation_failures_are_expression_errors(text: str, failure: str) -> None:
    expression = compile_expression(text)
    with pytest.raises(ExpressionError) as info:
        expression.evaluate(ROW, {})
    assert failure in str(info.value)


def test_a_batch_reports_failures_per_row() -> None:
    values = compile_expression("100 / n").evaluate_batch([({"n": 4}, {}), ({"n": 0}, {})])
    assert values[0] == 25
    assert isinstance(values[1], ExpressionError)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("ab1.()[]'\"+-*/%<>=!, _:{}ifnotandor")), max_size=30))
def test_any_text_compiles_or_is_refused_and_evaluates_or_fails_cleanly(text: str) -> None:
    try:
        expression = compile_expression(text)
    except ExpressionError:
        return
    with contextlib.suppress(ExpressionError):
        expression.evaluate({"a": 1, "b": "x"}, {})


HUGE = {
    "n": 10**200,
    "s": "a" * 100_000,
    "k": 100_000,
    "w": "%2000000000s",
    "ten": 10,
    "ones": "1" * 70_000,
}


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        # Each exponent is allowed on its own; the whole is what is too large.
        ("(((10**200)**200)**200)**200 > 0", "the integer built would have about"),
        ("'%2000000000s' % 'a'", "width or precision of 2000000000 is over 1000"),
        ("'%.*f' % [5, 1.0]", "'*' widths"),
        ("join('', ['a'*100000]*100000)", "the value built would hold about"),
        ("upper(['a'*100000]*100000)", "the value built would hold about"),
        ("'x' * 10 ** 9", "the value built would hold about"),
        ("2 ** 100000", "the integer built would have about 200000 bits; the limit is 65536"),
        ("round(1, -10**9)", "at most 1000 are allowed"),
        ("amount if amount > 0 else [(10**200)**200]", "the integer built would have about"),
    ],
)
def test_a_part_bound_to_be_too_large_is_refused_when_compiled(text: str, refusal: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert refusal in str(info.value)
    assert "is too large" in str(info.value)


@pytest.mark.parametrize(
    ("text", "failure"),
    [
        ("(((n**ten)**ten)**ten)**ten > 0", "the integer built would have about"),
        ("w % 'a'", "width or precision of 2000000000 is over 1000"),
        ("join('', [s]*k)", "the value built would hold about"),
        ("upper([s]*k)", "the value built would hold about"),
        ("lower(str([[s]*40]*k))", "the value built would hold about"),
        ("len(split(s * 40, 'a'))", "the value built would hold about"),
        ("('%(a)s' * 1000) % {'a': s}", "the value built would hold about"),
        ("int(ones, 2)", "the integer built would have about 70000 bits"),
    ],
)
def test_an_evaluation_past_the_limits_fails_cleanly_before_it_allocates(
    text: str, failure: str
) -> None:
    expression = compile_expression(text)
    with pytest.raises(ExpressionError) as info:
        expression.evaluate(HUGE, {})
    assert failure in str(info.value)


def test_the_work_budget_bounds_the_evaluation_as_a_whole() -> None:
    # Every step is within the size limit; together they are more work than allowed.
    expression = compile_expression(
        "len(s * 10) + len(s * 10) + len(s * 10) + len(s * 10)", Limits(work=3_000_000)
    )
    with pytest.raises(ExpressionError, match="more than 3000000 units of work"):
        expression.evaluate(HUGE, {})
    value, used = compile_expression("len(s * 10)", Limits(work=3_000_000)).measure(HUGE, {})
    assert value == 1_000_000
    assert used <= 3_000_000


def test_constant_parts_are_computed_once_and_lists_are_fresh_for_each_message() -> None:
    expression = compile_expression("[1, 2 ** 10]")
    first = expression.evaluate({}, {})
    first.append("changed by a downstream app")
    assert expression.evaluate({}, {}) == [1, 1024]


_FIELDS = ["a", "b", "s", "xs", "d", "payload", "headers", "missing"]
_ATOMS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["0.5", "1e308", "-2.5", "None", "True", "10**200", "'%5s'", "'%(a)s'"]),
    st.text(st.sampled_from(list("ab %s.-")), max_size=6).map(repr),
    st.sampled_from(_FIELDS),
)


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operators = ["+", "-", "*", "/", "//", "%", "**", "<", "==", "in", "and", "or"]
    return st.one_of(
        st.tuples(inner, st.sampled_from(operators), inner).map(lambda t: "({} {} {})".format(*t)),
        st.tuples(st.sampled_from(sorted(FUNCTIONS)), st.lists(inner, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        inner.map(lambda e: f"-{e}"),
        inner.map(lambda e: f"not {e}"),
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS), children, max_size=4)
    ),
    max_leaves=10,
)
#: A small budget for the fuzzer: anything it generates must stay within it (or fail cleanly).
_SMALL = Limits(int_bits=4096, size=20_000, width=50, work=50_000)


@settings(max_examples=400, deadline=None)
@given(
    st.recursive(_ATOMS, _expressions, max_leaves=12),
    st.fixed_dictionaries({name: _JSON for name in _FIELDS[:5]}),
)
def test_generated_expressions_over_generated_records_stay_within_a_small_budget(
    text: str, record: dict[str, Any]
) -> None:
    try:
        expression = compile_expression(text, _SMALL)
    except ExpressionError:
        return
    tracemalloc.start()
    try:
        _, used = expression.measure(record, {"id": "h"})
    except ExpressionError:
        used = 0
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert used <= _SMALL.work
    # Memory measured independently of the budget's own accounting: a few MB at most.
    assert peak < 8 * 1024 * 1024, f"{text!r} over {record!r} allocated {peak} bytes"
