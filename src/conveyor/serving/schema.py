"""JSON Schema and OpenAPI pieces built from a model's signature, for the protocols' documents.

Each protocol module describes its own paths with these (see
:mod:`conveyor.serving.protocols`); :mod:`conveyor.serving.openapi` puts
them together. Examples use the model's real input fields, so a client
generator or a fuzzer (schemathesis) gets payloads that can succeed.
"""

from __future__ import annotations

from typing import Any

from conveyor.models.base import Field
from conveyor.serving.service import ServedModel
from conveyor.serving.tensors import datatype_for

__all__ = [
    "ERROR",
    "PREDICTIONS",
    "errors",
    "example_record",
    "example_tensors",
    "example_value",
    "json_body",
    "json_schema",
    "model_params",
    "ok",
    "record_schema",
]

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "error": {"type": "string"},
                    "expected": {"type": "string"},
                },
            },
        },
    },
}

#: ``{"predictions": [...]}``: KServe V1's and MLflow's answer.
PREDICTIONS = {"type": "object", "properties": {"predictions": {"type": "array"}}}

_REASONS = {
    400: "Invalid request: the body names every offending field",
    404: "Unknown model or version",
    413: "Body larger than the limit",
    415: "Unsupported content type",
    422: "The model rejected inputs that match its signature",
    500: "The model failed",
    501: "Not offered by this server",
    504: "The request took longer than the timeout",
}


def json_schema(f: Field) -> dict[str, Any]:
    """The JSON Schema of one value of field ``f`` (nested arrays for its per-row shape)."""
    item: dict[str, Any]
    if f.dtype == "category":
        item = {"enum": list(f.values or ())}
    elif f.dtype.startswith("datetime64"):
        item = {"type": "string", "description": "ISO-8601 date or date-time, e.g. 2024-03-01"}
    elif f.dtype.startswith("float"):
        item = {"type": "number"}
    elif f.dtype.startswith(("int", "uint")):
        item = {"type": "integer"}
    elif f.dtype == "bool":
        item = {"type": "boolean"}
    else:
        item = {"type": "string"}
    if f.values is not None and f.dtype != "category":
        item["enum"] = list(f.values)
    if f.optional:
        # A field that may be missing takes null (NaN for numbers).
        if "type" in item:
            item["type"] = [item["type"], "null"]
        if "enum" in item:
            item["enum"] = [*item["enum"], None]
    for n in reversed(f.shape):
        item = {"type": "array", "items": item, "minItems": n, "maxItems": n}
    return item


def example_value(f: Field) -> Any:
    """A value field ``f`` accepts."""
    if f.values:
        value: Any = f.values[0]
    elif f.dtype.startswith("datetime64"):
        value = "2024-03-01T12:00:00"
    elif f.dtype.startswith("float"):
        value = 0.5
    elif f.dtype.startswith(("int", "uint")):
        value = 1
    elif f.dtype == "bool":
        value = True
    else:
        value = "text"
    for n in reversed(f.shape):
        value = [value] * n
    return value


def record_schema(served: ServedModel) -> dict[str, Any]:
    """One row as an object keyed by input field."""
    sig = served.signature
    return {
        "type": "object",
        "properties": {f.name: json_schema(f) for f in sig.inputs},
        "required": [f.name for f in sig.inputs if not f.optional],
        "additionalProperties": False,
    }


def example_record(served: ServedModel) -> dict[str, Any]:
    return {f.name: example_value(f) for f in served.signature.inputs}


def example_tensors(served: ServedModel) -> list[dict[str, Any]]:
    """One row as Open Inference Protocol input tensors."""
    return [
        {
            "name": f.name,
            "shape": [1, *f.shape],
            "datatype": datatype_for(f.dtype),
            "data": [example_value(f)],
        }
        for f in served.signature.inputs
    ]


def model_params(served: ServedModel, *, version: bool = False) -> list[dict[str, Any]]:
    """The ``{model_name}`` (and ``{model_version}``) path parameters: this model's only."""
    params: list[dict[str, Any]] = [
        {
            "name": "model_name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [served.name]},
        }
    ]
    if version:
        params.append(
            {
                "name": "model_version",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": [served.resolved.version]},
            }
        )
    return params


def errors(*codes: int) -> dict[str, Any]:
    """OpenAPI responses for these error statuses, each with the Error schema."""
    return {
        str(code): {
            "description": _REASONS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    """The OpenAPI 200 response with a JSON body of ``schema``."""
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def json_body(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    """A required JSON request body."""
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": example}},
    }
