"""The service's OpenAPI 3.1 document and a self-contained HTML docs page, built from the signature.

The document is specific to the served model: its name is the only value of
``{model_name}``, and request examples use its real input fields, so a
client generator or a fuzzer (schemathesis) gets payloads that can succeed.
Each protocol describes its own paths (:mod:`conveyor.serving.protocols`);
this module adds the service's own and puts them together.
"""

from __future__ import annotations

import html
from typing import Any

from conveyor._version import __version__
from conveyor.serving import schema
from conveyor.serving.protocols import PROTOCOLS
from conveyor.serving.service import ServedModel

__all__ = ["docs_page", "openapi_document"]


def openapi_document(served: ServedModel) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route this service answers."""
    paths: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        paths.update(protocol.openapi(served))
    plain = {"200": {"description": "OK"}}
    paths["/version"] = {"get": {"summary": "Server version", "responses": plain}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": plain}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Conveyor scoring service: {served.name}",
            "version": __version__,
            "description": (
                f"Model digest {served.resolved.digest}; task {served.signature.task}."
            ),
        },
        "paths": paths,
        "components": {"schemas": {"Error": schema.ERROR}},
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

    record = dumps([schema.example_record(served)]).decode()
    infer = dumps({"inputs": schema.example_tensors(served)}).decode()
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
