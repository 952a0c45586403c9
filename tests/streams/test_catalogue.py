"""Validation of a parsed stream against the catalogue: apps, roles, options and types."""

from __future__ import annotations

import pytest

from conveyor.streams.catalogue import CATALOGUE, Role, validate_stream
from conveyor.streams.dsl import DslError, parse_stream


def validate(definition: str) -> list[str]:
    return [v.spec.role.value for v in validate_stream(parse_stream(definition), definition)]


def test_roles_follow_positions_and_named_destinations() -> None:
    assert validate("http | filter --expression=x | log") == ["source", "processor", "sink"]
    assert validate(":orders > transform --expression=x > :out") == ["processor"]
    assert validate("time > :ticks") == ["source"]
    assert validate(":fraud.score > file --path=audit.jsonl") == ["sink"]
    assert validate(":a > :b") == []


def test_options_are_typed_with_defaults() -> None:
    d = "load-generator --count=10 --rate=2.5 | log"
    (gen, log) = validate_stream(parse_stream(d), d)
    assert gen.options["count"] == 10
    assert gen.options["rate"] == 2.5
    assert gen.options["fields"] == 4
    assert log.options["level"] == "INFO"


@pytest.mark.parametrize(
    ("definition", "code", "at", "message"),
    [
        ("time | frob | log", "UNKNOWN_APP", "frob",
         "no processor app named 'frob'; processors: filter, http-request, python, router, score"),
        ("time | filter --expr=a | log", "UNKNOWN_OPTION", "expr",
         "processor 'filter' has no option --expr; valid options: --expression"),
        ("time | filter | log", "MISSING_OPTION", "filter", "needs --expression"),
        ("time --interval=soon | log", "BAD_OPTION_VALUE", "interval",
         "--interval='soon': expected a number >= 0.001"),
        ("load-generator --count=-1 | log", "BAD_OPTION_VALUE", "count", "an integer >= 0"),
        ("time | file --path=x --format=xml", "BAD_OPTION_VALUE", "format",
         "expected one of jsonl, csv"),
        ("time | transform --expression=x --merge=maybe | log", "BAD_OPTION_VALUE", "merge",
         "expected true or false"),
        ("time | filter --expression='os.system(1' | log", "BAD_EXPRESSION", "expression",
         "is not valid"),
        ("log | time", "WRONG_ROLE", "log", "'log' is a sink; it cannot be used as a source here"),
        ("time", "LONELY_APP", "time", "needs an input or output"),
    ],
)  # fmt: skip
def test_errors_point_at_the_app_or_option(
    definition: str, code: str, at: str, message: str
) -> None:
    with pytest.raises(DslError) as info:
        validate(definition)
    assert info.value.code == code
    assert info.value.position == definition.index(at)
    assert message in str(info.value)


def test_every_app_declares_typed_options_with_descriptions() -> None:
    names = {name for name, _ in CATALOGUE}
    assert {"http", "time", "file", "load-generator"} <= names
    assert {"filter", "transform", "split", "router", "score", "http-request", "python"} <= names
    assert {"log", "sql", "throughput"} <= names
    assert ("file", Role.SINK) in CATALOGUE
    assert ("file", Role.SOURCE) in CATALOGUE
    for spec in CATALOGUE.values():
        for option in spec.options:
            assert option.description
            assert option.type in {
                "string",
                "int",
                "float",
                "bool",
                "expression",
                "choice",
                "path",
                "database",
            }
        given = {o.name: "x" for o in spec.options if o.required}
        resolved = spec.resolve(given)  # every default converts
        assert set(resolved) == {o.name for o in spec.options}


def test_the_public_surface_is_sorted_and_resolves() -> None:
    import conveyor.streams

    names = conveyor.streams.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.lower() if n.islower() else n))
    for name in names:
        assert getattr(conveyor.streams, name) is not None
