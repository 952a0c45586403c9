"""The service's OpenAPI 3.1 document and a self-contained HTML docs page, built from the signature.

The document is specific to the served model: its name is the only value of
``{model_name}``, and request examples use its real input fields, so a
client generator or a fuzzer (schemathesis) gets payloads that can succeed.
"""

from __future__ import annotations

import html
from typing import Any

from conveyor._version import __version__
from conveyor.models.base import Field
from conveyor.serving.service import ServedModel
from conveyor.serving.tensors import DATATYPES, datatype_for

__all__ = ["docs_page", "openapi_document"]

_ERROR = {
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


def _json_schema(f: Field) -> dict[str, Any]:
    if f.dtype.startswith("float"):
        item: dict[str, Any] = {"type": "number"}
    elif f.dtype.startswith(("int", "uint")):
        item = {"type": "integer"}
    elif f.dtype == "bool":
        item = {"type": "boolean"}
    else:
        item = {"type": "string"}
    if f.values is not None:
        item["enum"] = list(f.values)
    for n in reversed(f.shape):
        item = {"type": "array", "items": item, "minItems": n, "maxItems": n}
    return item


def _example_value(f: Field) -> Any:
    if f.values:
        value: Any = f.values[0]
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


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request: the body names every offending field",
        404: "Unknown model or version",
        413: "Body larger than the limit",
        415: "Unsupported content type",
        422: "The model rejected inputs that match its signature",
        500: "The model failed",
        504: "The request took longer than the timeout",
    }
    return {
        str(code): {
            "description": reasons[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def openapi_document(served: ServedModel) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route this service answers."""
    sig = served.signature
    record = {
        "type": "object",
        "properties": {f.name: _json_schema(f) for f in sig.inputs},
        "required": [f.name for f in sig.inputs if not f.optional],
        "additionalProperties": False,
    }
    example_record = {f.name: _example_value(f) for f in sig.inputs}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": sig.input_names},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    infer_example = {
        "inputs": [
            {
                "name": f.name,
                "shape": [1, *f.shape],
                "datatype": datatype_for(f.dtype),
                "data": [_example_value(f)],
            }
            for f in sig.inputs
        ]
    }
    model_param = [
        {
            "name": "model_name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [served.name]},
        }
    ]
    version_param = [
        *model_param,
        {
            "name": "model_version",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [served.resolved.version]},
        },
    ]
    infer_op = {
        "summary": "Open Inference Protocol V2 inference",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "inputs": {"type": "array", "items": tensor, "minItems": 1},
                            "outputs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string", "enum": served.output_names}
                                    },
                                },
                            },
                            "parameters": {"type": "object"},
                        },
                    },
                    "example": infer_example,
                }
            },
        },
        "responses": {**_ok({"type": "object"}), **_errors(400, 404, 413, 415, 422, 500, 504)},
    }
    simple_get = {"responses": _ok({"type": "object"})}
    predictions = {"type": "object", "properties": {"predictions": {"type": "array"}}}
    paths: dict[str, Any] = {
        "/v2": {"get": {"summary": "Server metadata", **simple_get}},
        "/v2/health/live": {"get": {"summary": "Liveness", **simple_get}},
        "/v2/health/ready": {"get": {"summary": "Readiness", **simple_get}},
        "/v2/models/{model_name}": {
            "get": {
                "summary": "Model metadata: inputs, outputs, digest, run",
                "parameters": model_param,
                "responses": {**_ok({"type": "object"}), **_errors(404)},
            }
        },
        "/v2/models/{model_name}/ready": {
            "get": {
                "parameters": model_param,
                "responses": {**_ok({"type": "object"}), **_errors(404)},
            }
        },
        "/v2/models/{model_name}/infer": {"post": {**infer_op, "parameters": model_param}},
        "/v2/models/{model_name}/versions/{model_version}/infer": {
            "post": {**infer_op, "parameters": version_param}
        },
        "/v1/models/{model_name}:predict": {
            "post": {
                "summary": "KServe V1 prediction",
                "parameters": model_param,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["instances"],
                                "properties": {"instances": {"type": "array", "items": record}},
                            },
                            "example": {"instances": [example_record]},
                        }
                    },
                },
                "responses": {**_ok(predictions), **_errors(400, 404, 413, 415, 422, 500, 504)},
            }
        },
        "/invocations": {
            "post": {
                "summary": "MLflow scoring protocol",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "dataframe_split": {
                                        "type": "object",
                                        "properties": {
                                            "columns": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                            "data": {"type": "array", "items": {"type": "array"}},
                                        },
                                    },
                                    "dataframe_records": {"type": "array", "items": record},
                                    "instances": {"type": "array"},
                                    "inputs": {},
                                    "params": {"type": "object"},
                                },
                            },
                            "example": {"dataframe_records": [example_record]},
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": {**_ok(predictions), **_errors(400, 413, 415, 422, 500, 504)},
            }
        },
        "/predict": {
            "post": {
                "summary": "Records in, records out (probabilities by class name)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": record, "minItems": 1},
                            "example": [example_record],
                        }
                    },
                },
                "responses": {
                    **_ok({"type": "array", "items": {"type": "object"}}),
                    **_errors(400, 413, 415, 422, 500, 504),
                },
            }
        },
        "/ping": {"get": {"summary": "MLflow health", "responses": {"200": {"description": "OK"}}}},
        "/health": {
            "get": {"summary": "MLflow health", "responses": {"200": {"description": "OK"}}}
        },
        "/version": {
            "get": {"summary": "Server version", "responses": {"200": {"description": "OK"}}}
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "OK"}}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Conveyor scoring service: {served.name}",
            "version": __version__,
            "description": f"Model digest {served.resolved.digest}; task {sig.task}.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }


def docs_page(served: ServedModel, base: str = "") -> str:
    """A single HTML page: the model's fields and a curl command per protocol."""
    sig = served.signature
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(f.name)}</td><td>{esc(f.dtype)}</td><td>{esc(str(list(f.shape)))}</td>"
        f"<td>{'yes' if f.optional else ''}</td></tr>"
        for f in sig.inputs
    )
    outs = "".join(
        f"<tr><td>{esc(f.name)}</td><td>{esc(f.dtype)}</td><td>{esc(str(list(f.shape)))}</td></tr>"
        for f in sig.outputs
    )
    from conveyor.serving.http import dumps

    record = dumps([{f.name: _example_value(f) for f in sig.inputs}]).decode()
    infer = dumps(
        {
            "inputs": [
                {
                    "name": f.name,
                    "shape": [1, *f.shape],
                    "datatype": datatype_for(f.dtype),
                    "data": [_example_value(f)],
                }
                for f in sig.inputs
            ]
        }
    ).decode()
    name = esc(served.name)
    classes = esc(", ".join(map(str, sig.classes))) if sig.classes else "—"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{name} — Conveyor</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .6rem}}
pre{{background:#f4f4f4;padding:.6rem;overflow-x:auto}}</style></head><body>
<h1>Model <code>{name}</code></h1>
<p>Task: {esc(sig.task)} · classes: {classes} · digest <code>{esc(served.resolved.digest)}</code>
· run <code>{esc(served.resolved.run_id or "unknown")}</code> ·
<a href="{base}/openapi.json">OpenAPI document</a> · <a href="{base}/metrics">metrics</a></p>
<h2>Inputs</h2><table><tr><th>field</th><th>type</th><th>per-row shape</th><th>optional</th></tr>
{rows}</table>
<h2>Outputs</h2><table><tr><th>name</th><th>type</th><th>per-row shape</th></tr>{outs}</table>
<h2>Records: <code>POST /predict</code></h2>
<pre>curl -s localhost:PORT/predict -d '{esc(record)}'</pre>
<h2>Open Inference Protocol V2: <code>POST /v2/models/{name}/infer</code></h2>
<pre>curl -s localhost:PORT/v2/models/{name}/infer -d '{esc(infer)}'</pre>
<h2>MLflow: <code>POST /invocations</code></h2>
<pre>curl -s localhost:PORT/invocations -H 'content-type: application/json' \\
  -d '{{"dataframe_records": {esc(record)}}}'</pre>
<h2>KServe V1: <code>POST /v1/models/{name}:predict</code></h2>
<pre>curl -s localhost:PORT/v1/models/{name}:predict -d '{{"instances": {esc(record)}}}'</pre>
<p>Errors answer <code>{{"error": "...", "details": [{{"field", "error", "expected"}}]}}</code>.
Every response carries <code>x-request-id</code>, <code>x-model-digest</code> and, when known,
<code>x-model-run-id</code>.</p>
</body></html>
"""
