"""KServe V1 ``:predict``: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

An instance is a list of values in signature order (or the one tensor
field's row), or an object keyed by field name. ``inputs`` is accepted as a
synonym of ``instances``. Each prediction is the model's primary output for
that row (the class label, the regression value or the cluster).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from conveyor.serving.errors import InvalidInput, Problem, RequestError
from conveyor.serving.http import Request, Response, json_response
from conveyor.serving.service import Scoring, ServedModel, row_values

__all__ = ["columns_from_instances", "predict", "primary_predictions"]


def columns_from_instances(served: ServedModel, instances: Any, where: str) -> dict[str, Any]:
    """Typed columns from a list of row lists or row objects."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput([Problem(where, "missing or empty", "a non-empty list of rows")])
    builder = served.builder()
    if isinstance(instances[0], dict) and all(isinstance(row, dict) for row in instances):
        return builder.from_records(instances, where)
    return builder.from_rows(instances, where)


def predict(served: ServedModel, req: Request) -> Scoring:
    body = req.json()
    if not isinstance(body, dict):
        raise RequestError('a :predict request is a JSON object: {"instances": [...]}')
    key = "instances" if "instances" in body else "inputs"
    columns = columns_from_instances(served, body.get(key), key)
    return Scoring(columns, partial(primary_predictions, served))


def primary_predictions(served: ServedModel, outputs: dict[str, Any]) -> Response:
    """``{"predictions": [...]}``: the model's primary output per row (KServe V1 and MLflow)."""
    primary = served.primary_output
    return json_response({"predictions": row_values(outputs[primary]) if primary else []})
