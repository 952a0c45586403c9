"""Validate OpenLineage events with the classes ``openlineage-python`` generates from the spec.

openlineage-python (1.54) does not ship the JSON schema files themselves,
nor does its sdist; its ``openlineage.client.generated`` classes are
generated from them (spec 2-0-2 and each facet's own schema, whose URLs
they carry) and check what the schema checks: required fields, UUID run
ids, ISO date-times. An event is valid here when every field of it builds
the spec's class for that place (no unknown field, none missing) and
serialising those objects gives the event back unchanged, schema URLs
included. Conveyor's own facets (not in the spec) are checked as custom
facets: ``_producer`` and ``_schemaURL`` present, no other ``_`` field.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import attr
from openlineage.client.generated import (
    base,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    processing_engine_run,
)
from openlineage.client.serde import Serde

__all__ = ["validate_event"]

#: The standard facets Conveyor writes, by the name they are keyed under.
FACETS: dict[str, type] = {
    "jobType": job_type_job.JobTypeJobFacet,
    "version": dataset_version_dataset.DatasetVersionDatasetFacet,
    "parent": parent_run.ParentRunFacet,
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
}


def validate_event(event: dict[str, Any]) -> None:
    """AssertionError (or the spec class's own error) naming what is wrong with ``event``."""
    standard = _without_custom_facets(event, "event")
    built = _build(base.RunEvent, standard, "event")
    again = _prune_defaults(Serde.to_dict(built), standard)
    assert again == standard, (
        f"the event does not survive the spec's classes:\n{again}\n!=\n{standard}"
    )


def _prune_defaults(again: Any, given: Any) -> Any:
    """``again`` without the empty lists and objects the classes add where ``given`` had none."""
    if isinstance(again, dict) and isinstance(given, dict):
        return {
            k: _prune_defaults(v, given.get(k))
            for k, v in again.items()
            if k in given or v not in ({}, [])
        }
    if isinstance(again, list) and isinstance(given, list) and len(again) == len(given):
        return [_prune_defaults(a, g) for a, g in zip(again, given, strict=True)]
    return again


def _without_custom_facets(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_without_custom_facets(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("facets", "inputFacets", "outputFacets") and isinstance(item, dict):
            kept = {}
            for name, one in item.items():
                if name in FACETS:
                    kept[name] = _without_custom_facets(one, f"{where}.{key}.{name}")
                else:
                    _check_custom(one, f"{where}.{key}.{name}")
            out[key] = kept
        else:
            out[key] = _without_custom_facets(item, f"{where}.{key}")
    return out


def _check_custom(facet: Any, where: str) -> None:
    assert isinstance(facet, dict), f"{where}: a facet is an object"
    for required in ("_producer", "_schemaURL"):
        assert isinstance(facet.get(required), str), f"{where}: {required} is required"
    extra = [k for k in facet if k.startswith("_") and k not in ("_producer", "_schemaURL")]
    assert not extra, f"{where}: custom facet fields must not start with _: {extra}"


def _build(cls: type, value: Any, where: str) -> Any:
    assert isinstance(value, dict), f"{where}: expected an object for {cls.__name__}"
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attr.fields(cls)}
    unknown = set(value) - set(fields)
    assert not unknown, f"{where}: {sorted(unknown)} not in the spec's {cls.__name__}"
    given = {}
    for name, item in value.items():
        if fields[name].init:  # the others (schema URLs) the class sets; the round trip checks
            given[fields[name].alias] = _value(hints[name], item, f"{where}.{name}", name)
    return cls(**given)


def _value(hint: Any, item: Any, where: str, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if item is None:
            return None
        assert len(options) == 1, f"{where}: cannot tell which of {options}"
        return _value(options[0], item, where, name)
    if origin is list:
        (inner,) = typing.get_args(hint)
        assert isinstance(item, list), f"{where}: expected a list"
        return [_value(inner, v, f"{where}[{i}]", name) for i, v in enumerate(item)]
    if origin is dict:
        assert isinstance(item, dict), f"{where}: expected an object"
        return {k: _build(FACETS[k], v, f"{where}.{k}") for k, v in item.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(item)
    if attr.has(hint):
        return _build(hint, item, where)
    assert isinstance(item, hint), f"{where}: expected {hint.__name__}, got {item!r}"
    return item
