"""MLflow's scoring protocol: ``POST /invocations``, so MLflow clients switch without changes.

JSON bodies hold exactly one of ``dataframe_split`` (``{"columns": [...],
"data": [[...]]}``), ``dataframe_records`` (a list of row objects),
``instances`` (a list of rows) or ``inputs`` (rows, or columns by name);
``params`` is accepted and ignored. ``text/csv`` bodies carry a header row.
The answer is ``{"predictions": [...]}``: the model's primary output per row.
"""

from __future__ import annotations

import csv
import io
import math
from functools import partial
from typing import Any

from conveyor.models.base import Field
from conveyor.serving import schema
from conveyor.serving.columns import expected_type
from conveyor.serving.errors import InvalidInput, Problem, RequestError
from conveyor.serving.http import Request, Response, loads
from conveyor.serving.protocols.base import Protocol, Route, Site
from conveyor.serving.protocols.v1 import columns_from_instances, primary_predictions
from conveyor.serving.service import Scoring, ServedModel

__all__ = ["PROTOCOL", "invocations"]

_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: Two lines with text: a header and a data row (searched, not anchored).
_CSV_PATTERN = r"\S[^\n]*\n[\s\S]*\S"


def _split(served: ServedModel, split: Any) -> dict[str, Any]:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise InvalidInput(
            [
                Problem(
                    "dataframe_split",
                    "is not {columns, data}",
                    '{"columns": [...], "data": [[...]]}',
                )
            ]
        )
    data = split["data"]
    columns = split.get("columns")
    if columns is None:
        return columns_from_instances(served, data, "dataframe_split.data")
    # pandas' to_dict(orient="split") of a frame made from an array names columns 0, 1, ...
    if not isinstance(columns, list) or not all(type(c) in (str, int) for c in columns):
        raise InvalidInput([Problem("dataframe_split.columns", "is not a list of names")])
    columns = [str(c) for c in columns]
    if len(set(columns)) != len(columns):
        twice = next(c for c in columns if columns.count(c) > 1)
        raise InvalidInput([Problem("dataframe_split.columns", f"names {twice!r} twice")])
    bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != len(columns)]
    if bad:
        raise InvalidInput(
            [
                Problem(
                    f"dataframe_split.data[{bad[0]}]",
                    f"does not hold {len(columns)} values",
                    f"one value per column: {', '.join(columns)}",
                )
            ]
        )
    by_name = {name: [row[j] for row in data] for j, name in enumerate(columns)}
    return served.builder().from_columns(by_name, "dataframe_split")


def _parse_cell(f: Field, text: str) -> Any:
    text = text.strip()
    if f.dtype.startswith("float"):
        if text == "" or text.lower() in ("nan", "na", "null"):
            return None if f.optional else math.nan
        return float(text)
    if f.dtype.startswith(("int", "uint")):
        return int(text)
    if f.dtype == "bool":
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(text)
    return text


def _csv(served: ServedModel, body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RequestError("the CSV body is not UTF-8 text") from None
    # newline="": the csv module then accepts \r, \n and \r\n line endings alike.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [row for row in reader if row]
    except csv.Error as exc:
        where = f"line {reader.line_num}"
        raise RequestError(f"the CSV body is not valid CSV at {where}: {exc}") from None
    if len(rows) < 2:
        raise InvalidInput([Problem("csv", "needs a header row and at least one data row")])
    header, data = rows[0], rows[1:]
    fields = {f.name: f for f in served.signature.inputs}
    builder = served.builder()
    tensor = builder.tensor
    # A model fitted on an array reads a table of as many columns as it has features.
    cell_field = (
        Field(tensor.name, tensor.dtype, optional=tensor.optional)
        if tensor is not None and tensor.name not in header
        else None
    )
    problems: list[Problem] = []
    columns: dict[str, list[Any]] = {}
    for j, name in enumerate(header):
        f = fields.get(name, cell_field)
        if f is None:
            columns[name] = []
            continue
        values: list[Any] = []
        for i, row in enumerate(data):
            cell = row[j] if j < len(row) else ""
            try:
                values.append(_parse_cell(f, cell))
            except ValueError:
                problems.append(Problem(f"csv.{name}", f"row {i + 1}: {cell!r}", expected_type(f)))
                break
        columns[name] = values
    if problems:
        raise InvalidInput(problems)
    return builder.from_columns(columns, "csv")


def invocations(served: ServedModel, req: Request) -> Scoring:
    ctype = req.content_type
    if ctype == "text/csv":
        columns = _csv(served, req.body)
    else:
        if ctype not in ("application/json", ""):
            raise RequestError(
                f"content type {ctype!r} is not supported; send application/json or text/csv",
                status=415,
                kind="content_type",
            )
        body = loads(req.body)
        keys = [k for k in _FORMATS if isinstance(body, dict) and k in body]
        if len(keys) != 1:
            raise RequestError(
                "the JSON body must hold exactly one of "
                + ", ".join(_FORMATS)
                + (f" (it holds {', '.join(keys)})" if keys else "")
            )
        key = keys[0]
        value = body[key]
        if key == "dataframe_split":
            columns = _split(served, value)
        elif key == "inputs" and isinstance(value, dict):
            columns = served.builder().from_columns(value, "inputs")
        else:
            columns = columns_from_instances(served, value, key)
    return Scoring(columns, partial(primary_predictions, served))


# -- routes -------------------------------------------------------------------


def _alive(site: Site) -> Response:
    return Response(body=b"\n")


def routes(served: ServedModel) -> list[Route]:
    return [
        Route("/invocations", score=invocations),
        Route("/ping", page=_alive),
        Route("/health", page=_alive),
    ]


def openapi(served: ServedModel) -> dict[str, Any]:
    request = {
        "type": "object",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}, "minItems": 1},
                },
            },
            "dataframe_records": {
                "type": "array",
                "items": schema.record_schema(served),
                "minItems": 1,
            },
            "instances": {"type": "array", "minItems": 1},
            "inputs": {},
            "params": {"type": "object"},
        },
    }
    body = schema.json_body(request, {"dataframe_records": [schema.example_record(served)]})
    # A header row and at least one data row: an empty table has nothing to score (400).
    body["content"]["text/csv"] = {"schema": {"type": "string", "pattern": _CSV_PATTERN}}
    health = {"get": {"summary": "MLflow health", "responses": {"200": {"description": "OK"}}}}
    return {
        "/invocations": {
            "post": {
                "summary": "MLflow scoring protocol",
                "requestBody": body,
                "responses": {
                    **schema.ok(schema.PREDICTIONS),
                    **schema.errors(400, 413, 415, 422, 500, 504),
                },
            }
        },
        "/ping": health,
        "/health": health,
    }


PROTOCOL = Protocol("mlflow", routes, openapi)
