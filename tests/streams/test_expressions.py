"""The safe expression language: what it computes, what it refuses, and how it fails."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.streams.errors import ExpressionError
from conveyor.streams.expressions import compile_expression

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
        ("'x' * 10 ** 9", "repeating a sequence"),
        ("2 ** 100000", "exponents above 256"),
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
