"""Spring Cloud Data Flow's own cases: same trees for valid definitions, same code and
position for invalid ones, and the figures docs/stream-dsl.md reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.streams.dsl import CODES, DslError, is_stream_name, parse_stream, to_text
from tests.streams.scdf_cases import INVALID, NAMES, VALID, shape

_DOC = Path(__file__).parents[2] / "docs" / "stream-dsl.md"


def _outcome(definition: str) -> tuple[str, int | str]:
    try:
        return "parsed", shape(parse_stream(definition))
    except DslError as error:
        return error.code, error.position


def _agrees(case: tuple[str, str | None, int | None]) -> bool:
    definition, code, position = case
    got = _outcome(definition)
    return got[0] != "parsed" if code is None else got == (code, position)


@pytest.mark.parametrize(("definition", "expected"), VALID)
def test_scdf_valid_definitions_parse_to_the_same_tree(definition: str, expected: str) -> None:
    tree = parse_stream(definition)
    assert shape(tree) == expected
    assert parse_stream(to_text(tree)) == tree


@pytest.mark.parametrize(("definition", "code", "position"), INVALID)
def test_scdf_invalid_definitions_fail_with_its_code_at_its_position(
    definition: str, code: str | None, position: int | None
) -> None:
    with pytest.raises(DslError) as info:
        parse_stream(definition)
    assert info.value.code in CODES
    if code is not None:
        assert (info.value.code, info.value.position) == (code, position)
        assert f"[{code}] at position {position}" in str(info.value)


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_stream_names_follow_scdf(name: str, valid: bool) -> None:
    assert is_stream_name(name) is valid
    outcome = _outcome(f"{name} = time | log")
    assert (outcome[0] == "parsed") is valid


def test_the_docs_report_the_measured_agreement() -> None:
    text = _DOC.read_text()
    valid = sum(_outcome(d) == ("parsed", s) for d, s in VALID)
    invalid = sum(_agrees(case) for case in INVALID)
    names = sum(is_stream_name(n) is v for n, v in NAMES)
    assert f"valid definitions: **{valid} of {len(VALID)}**" in text
    assert f"invalid definitions: **{invalid} of {len(INVALID)}**" in text
    assert f"stream names: **{names} of {len(NAMES)}**" in text


def test_every_error_code_is_in_the_docs_table() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", _DOC.read_text(), re.MULTILINE))
    assert documented == set(CODES)
