"""``/predict``: a list of records in, a list of records out.

    [{"age": 41, "income": 52000}]
    -> [{"label": "yes", "probabilities": {"no": 0.12, "yes": 0.88}}]

A single object is accepted as one record. Probabilities are keyed by class
name; every other output appears under its own name.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from conveyor.serving import schema
from conveyor.serving.errors import InvalidInput, Problem
from conveyor.serving.http import Request, Response, json_response
from conveyor.serving.protocols.base import Protocol, Route
from conveyor.serving.service import Scoring, ServedModel, row_values

__all__ = ["PROTOCOL", "predict"]


def predict(served: ServedModel, req: Request) -> Scoring:
    body = req.json()
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list):
        raise InvalidInput(
            [Problem("body", "is not a list of records", "[{field: value, ...}, ...]")]
        )
    if not records:
        raise InvalidInput(
            [Problem("body", "is an empty list: there is nothing to score", "at least one record")]
        )
    columns = served.builder().from_records(records, "")
    return Scoring(columns, partial(_answer, served, len(records)))


def _answer(served: ServedModel, rows: int, outputs: dict[str, Any]) -> Response:
    classes = served.signature.classes
    per_output: dict[str, list[Any]] = {}
    for name, array in outputs.items():
        values = row_values(array)
        if name == "probabilities" and classes is not None:
            keys = [str(c) for c in classes]
            values = [dict(zip(keys, row, strict=True)) for row in values]
        per_output[name] = values
    names = list(per_output)
    return json_response([{n: per_output[n][i] for n in names} for i in range(rows)])


def routes(served: ServedModel) -> list[Route]:
    return [Route("/predict", score=predict)]


def openapi(served: ServedModel) -> dict[str, Any]:
    request = {"type": "array", "items": schema.record_schema(served), "minItems": 1}
    return {
        "/predict": {
            "post": {
                "summary": "Records in, records out (probabilities by class name)",
                "requestBody": schema.json_body(request, [schema.example_record(served)]),
                "responses": {
                    **schema.ok({"type": "array", "items": {"type": "object"}}),
                    **schema.errors(400, 413, 415, 422, 500, 504),
                },
            }
        }
    }


PROTOCOL = Protocol("records", routes, openapi)
