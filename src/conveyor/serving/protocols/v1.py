"""KServe V1 ``:predict``: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

An instance is a list of values in signature order (or the one tensor
field's row), or an object keyed by field name. ``inputs`` is accepted as a
synonym of ``instances``. Each prediction is the model's primary output for
that row (the class label, the regression value or the cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from conveyor.serving import schema
from conveyor.serving.errors import InvalidInput, Problem, RequestError
from conveyor.serving.http import Request, Response, json_response
from conveyor.serving.protocols.base import Protocol, Route, Site, unknown_model
from conveyor.serving.service import Scoring, ServedModel, row_values

__all__ = ["PROTOCOL", "columns_from_instances", "predict", "primary_predictions"]


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


# -- routes -------------------------------------------------------------------

_MODELS = "/v1/models/"


def _status(name: str) -> Callable[[Site], Response]:
    def page(site: Site) -> Response:
        if name != site.served.name:
            raise unknown_model(name, site.served)
        return json_response({"name": name, "ready": site.ready})

    return page


def _list(site: Site) -> Response:
    """KServe's model list: this server serves one model."""
    return json_response({"models": [site.served.name]})


def explain(served: ServedModel, req: Request) -> Scoring:
    """``:explain`` is part of KServe V1; this server has no explainer, and says so."""
    raise RequestError(
        f"model {served.name!r} has no explainer: this server answers :predict only",
        status=501,
        kind="not_implemented",
    )


def routes(served: ServedModel) -> list[Route]:
    return [
        Route(f"{_MODELS}{served.name}:predict", score=predict),
        Route(f"{_MODELS}{served.name}:explain", score=explain),
        Route(f"{_MODELS}{served.name}", page=_status(served.name)),
        Route("/v1/models", page=_list),
    ]


def resolve(served: ServedModel, path: str) -> Route | None:
    if not path.startswith(_MODELS):
        return None
    for verb, handler in ((":predict", predict), (":explain", explain)):
        if path.endswith(verb):
            name = path[len(_MODELS) : -len(verb)]
            if name != served.name:
                raise unknown_model(name, served)
            return Route(path, score=handler)
    return Route(path, page=_status(path[len(_MODELS) :]))


def openapi(served: ServedModel) -> dict[str, Any]:
    request = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "items": schema.record_schema(served), "minItems": 1}
        },
    }
    model = schema.model_params(served)
    status = {"type": "object", "properties": {"name": {}, "ready": {"type": "boolean"}}}
    return {
        "/v1/models": {
            "get": {
                "summary": "KServe V1 model list (this server's one model)",
                "responses": schema.ok(
                    {"type": "object", "properties": {"models": {"type": "array"}}}
                ),
            }
        },
        "/v1/models/{model_name}": {
            "get": {
                "summary": "KServe V1 model status",
                "parameters": model,
                "responses": {**schema.ok(status), **schema.errors(404)},
            }
        },
        "/v1/models/{model_name}:explain": {
            "post": {
                "summary": "KServe V1 explanation: not offered (501)",
                "parameters": model,
                "responses": schema.errors(404, 501),
            }
        },
        "/v1/models/{model_name}:predict": {
            "post": {
                "summary": "KServe V1 prediction",
                "parameters": model,
                "requestBody": schema.json_body(
                    request, {"instances": [schema.example_record(served)]}
                ),
                "responses": {
                    **schema.ok(schema.PREDICTIONS),
                    **schema.errors(400, 404, 413, 415, 422, 500, 504),
                },
            }
        },
    }


PROTOCOL = Protocol("v1", routes, openapi, resolve)
