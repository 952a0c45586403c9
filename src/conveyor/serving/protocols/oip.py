"""Open Inference Protocol V2 (KServe V2 REST): health, metadata and ``infer``.

An inference request names one tensor per input field::

    {"id": "42", "inputs": [{"name": "x", "shape": [2, 20], "datatype": "FP64",
                             "data": [[...20 numbers...], [...]]}],
     "outputs": [{"name": "label"}]}

``shape[0]`` is the number of rows; the rest must equal the field's per-row
shape (``[n]`` and ``[n, 1]`` both feed a scalar field). Integer tensors
may feed float fields; nothing narrows silently. Triton's binary tensor
extension is understood both ways, which is what ``tritonclient`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

from conveyor._version import __version__
from conveyor.serving import schema
from conveyor.serving.columns import flatten_rows
from conveyor.serving.errors import InvalidInput, Problem, RequestError
from conveyor.serving.http import Request, Response, dumps, json_response, loads
from conveyor.serving.protocols.base import Protocol, Route, Site, unknown_model
from conveyor.serving.service import Scoring, ServedModel, column_values
from conveyor.serving.tensors import (
    DATATYPES,
    datatype_for,
    datatype_of,
    decode_binary,
    encode_binary,
    field_accepts,
)

__all__ = ["PROTOCOL", "infer", "model_metadata", "server_metadata"]

BINARY_HEADER = "inference-header-content-length"


def server_metadata() -> dict[str, Any]:
    return {
        "name": "conveyor",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }


def model_metadata(served: ServedModel) -> dict[str, Any]:
    sig = served.signature
    return {
        "name": served.name,
        "versions": [served.resolved.version],
        "platform": f"conveyor-{served.resolved.model.format}",
        "inputs": [
            {"name": f.name, "datatype": datatype_for(f.dtype), "shape": [-1, *f.shape]}
            for f in sig.inputs
        ],
        "outputs": [
            {"name": f.name, "datatype": datatype_for(f.dtype), "shape": [-1, *f.shape]}
            for f in sig.outputs
        ],
        "parameters": {
            "digest": served.resolved.digest,
            "run_id": served.resolved.run_id,
            "task": sig.task,
            "classes": list(sig.classes) if sig.classes is not None else None,
        },
    }


def _split_body(req: Request) -> tuple[Any, memoryview]:
    """The JSON header and the binary tensor section of a request."""
    raw_length = req.headers.get(BINARY_HEADER)
    if raw_length is None:
        return req.json(), memoryview(b"")
    try:
        length = int(raw_length)
    except ValueError:
        raise RequestError(
            f"Inference-Header-Content-Length {raw_length!r} is not a number"
        ) from None
    if not 0 < length <= len(req.body):
        raise RequestError(
            f"Inference-Header-Content-Length {length} does not fit a body of {len(req.body)} bytes"
        )
    return loads(req.body[:length]), memoryview(req.body)[length:]


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` object of a request or tensor ({} when absent); 400 when not an object."""
    params = holder.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput([Problem(where, f"is {type(params).__name__}", "an object")])
    return params


def _shape(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(type(n) is int and n >= 0 for n in value) and value:
        return value
    return None


def _requested(body: dict[str, Any], served: ServedModel) -> list[tuple[str, bool]]:
    """(output name, as binary) for each output to return."""
    params = _parameters(body, "parameters")
    all_binary = bool(params.get("binary_data_output", False)) if params else False
    outputs = body.get("outputs")
    if outputs is None:
        return [(name, all_binary) for name in served.output_names]
    if not isinstance(outputs, list):
        raise RequestError("'outputs' must be a list of {\"name\": ...} objects")
    known = served.output_names
    chosen: list[tuple[str, bool]] = []
    problems: list[Problem] = []
    for i, item in enumerate(outputs):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in known:
            problems.append(
                Problem(
                    f"outputs[{i}].name", f"unknown output {name!r}", f"one of {', '.join(known)}"
                )
            )
            continue
        oparams = item.get("parameters") or {}
        binary = (
            bool(oparams.get("binary_data", all_binary)) if isinstance(oparams, dict) else False
        )
        chosen.append((name, binary))
    if problems:
        raise InvalidInput(problems)
    return chosen


def _columns(body: dict[str, Any], binary: memoryview, served: ServedModel) -> dict[str, Any]:
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput([Problem("inputs", "missing or empty", "a list of input tensors")])
    builder = served.builder()
    fields = builder.fields
    problems = builder.problems
    seen: set[str] = set()
    offset = 0
    for i, tensor in enumerate(tensors):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            problems.append(Problem(where, "is not an object", "{name, shape, datatype, data}"))
            continue
        name, datatype, shape = (
            tensor.get("name"),
            tensor.get("datatype"),
            _shape(tensor.get("shape")),
        )
        bad = False
        try:
            params = _parameters(tensor, f"{where}.parameters")
        except InvalidInput as exc:
            problems.extend(exc.details)
            params, bad = {}, True
        size = params.get("binary_data_size") if params else None
        if not isinstance(name, str):
            problems.append(Problem(f"{where}.name", "missing or not a string"))
            bad = True
        if datatype not in DATATYPES:
            problems.append(
                Problem(f"{where}.datatype", f"unknown datatype {datatype!r}", ", ".join(DATATYPES))
            )
            bad = True
        if shape is None:
            problems.append(
                Problem(
                    f"{where}.shape", f"is {tensor.get('shape')!r}", "a non-empty list of sizes"
                )
            )
            bad = True
        if size is not None and (type(size) is not int or size < 0 or offset + size > len(binary)):
            problems.append(
                Problem(f"{where}.parameters.binary_data_size", f"{size!r} is not valid")
            )
            bad = True
        raw = binary[offset : offset + size] if isinstance(size, int) and size >= 0 else None
        offset += size if isinstance(size, int) and size >= 0 else 0
        if bad or not isinstance(name, str) or shape is None:
            continue
        label = f"inputs[{name}]"
        if name not in fields:
            problems.append(Problem(label, "unknown input", f"one of {', '.join(fields)}"))
            continue
        if name in seen:
            problems.append(Problem(label, "given twice"))
            continue
        seen.add(name)
        field = fields[name]
        assert isinstance(datatype, str)
        if not field_accepts(field.dtype, datatype):
            problems.append(
                Problem(label, f"has datatype {datatype}", f"{datatype_for(field.dtype)} tensor")
            )
            continue
        per_row = tuple(shape[1:])
        if per_row != field.shape and not (not field.shape and per_row == (1,)):
            problems.append(
                Problem(
                    label,
                    f"has shape {shape}",
                    f"[rows{''.join(f', {n}' for n in field.shape)}]",
                )
            )
            continue
        if raw is not None:
            try:
                array = decode_binary(raw, datatype, shape, name)
            except RequestError as exc:
                problems.append(Problem(label, exc.message))
                continue
            builder.add_array(field, array)
            continue
        data = tensor.get("data")
        if data is None:
            problems.append(Problem(f"{label}.data", "missing", "a flat or nested list of values"))
            continue
        if (
            datatype.startswith("FP")
            and len(shape) == 2
            and len(field.shape) == 1
            and isinstance(data, list)
            and len(data) == shape[0]
            and field.dtype in ("float32", "float64")
            and builder.add_float_rows(field, data)
        ):
            continue  # nested rows of numbers, the common case, in one step
        flat = _flat(data)
        count = 1
        for n in shape:
            count *= n
        if len(flat) != count:
            problems.append(
                Problem(f"{label}.data", f"has {len(flat)} values but shape {shape} needs {count}")
            )
            continue
        if datatype.startswith(("INT", "UINT")) and float in set(map(type, flat)):
            problems.append(Problem(f"{label}.data", f"holds floats in an {datatype} tensor"))
            continue
        builder.add_flat(field, flat, shape[0])
    for f in served.signature.inputs:
        if f.name not in seen:
            builder.missing(f, "inputs")
    return builder.finish()


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        depth, probe = 0, cast(Any, data)
        while isinstance(probe, list) and probe:
            depth, probe = depth + 1, probe[0]
        flat, error = flatten_rows([data], _guess_shape(data, depth))
        if error is None:
            return flat
        # Ragged nesting: flatten whatever is there; the count check reports it.
        out: list[Any] = []
        stack: list[Any] = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            else:
                out.append(item)
        return out
    return data


def _guess_shape(data: list[Any], depth: int) -> tuple[int, ...]:
    shape: list[int] = []
    probe: Any = data
    for _ in range(depth):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    return tuple(shape)


def infer(served: ServedModel, req: Request) -> Scoring:
    body, binary = _split_body(req)
    if not isinstance(body, dict):
        raise RequestError("an inference request is a JSON object with an 'inputs' list")
    requested = _requested(body, served)
    columns = _columns(body, binary, served)
    request_id = body.get("id")
    return Scoring(
        columns,
        partial(_answer, served, requested, request_id if isinstance(request_id, str) else None),
    )


def _answer(
    served: ServedModel,
    requested: list[tuple[str, bool]],
    request_id: str | None,
    outputs: dict[str, Any],
) -> Response:
    result: dict[str, Any] = {
        "model_name": served.name,
        "model_version": served.resolved.version,
        "outputs": [],
    }
    if request_id is not None:
        result["id"] = request_id
    chunks: list[bytes] = []
    for name, as_binary in requested:
        array = outputs[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if as_binary:
            raw = encode_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = column_values(array.ravel())
        result["outputs"].append(entry)
    header = dumps(result)
    if not chunks:
        return Response(body=header)
    return Response(
        body=header + b"".join(chunks),
        content_type="application/octet-stream",
        headers={"inference-header-content-length": str(len(header))},
    )


# -- routes -------------------------------------------------------------------

_MODELS = "/v2/models/"


def _check_model_path(served: ServedModel, rest: str) -> None:
    """``name`` or ``name/versions/v``: 404 for another model or version."""
    name, _, version_part = rest.partition("/versions/")
    if name != served.name:
        raise unknown_model(name, served)
    if version_part and version_part != served.resolved.version:
        raise RequestError(
            f"model {name!r} has no version {version_part!r}; it has {served.resolved.version!r}",
            status=404,
            kind="not_found",
        )


def _live(site: Site) -> Response:
    return json_response({"live": True})


def _ready(site: Site) -> Response:
    if not site.ready:
        raise RequestError("shutting down", status=503, kind="unavailable")
    return json_response({"ready": True})


def _server(site: Site) -> Response:
    return json_response(server_metadata())


def _model_page(rest: str) -> Callable[[Site], Response]:
    """Metadata (``name``, ``name/versions/v``) or readiness (``.../ready``) of the model."""

    def page(site: Site) -> Response:
        ready = rest.endswith("/ready")
        _check_model_path(site.served, rest.removesuffix("/ready"))
        if ready:
            return json_response({"name": site.served.name, "ready": site.ready})
        return json_response(model_metadata(site.served))

    return page


def routes(served: ServedModel) -> list[Route]:
    model = f"{_MODELS}{served.name}"
    return [
        Route(f"{model}/infer", score=infer),
        Route(f"{model}/versions/{served.resolved.version}/infer", score=infer),
        Route("/v2", page=_server),
        Route("/v2/health/live", page=_live),
        Route("/v2/health/ready", page=_ready),
        Route(model, page=_model_page(served.name)),
        Route(f"{model}/ready", page=_model_page(f"{served.name}/ready")),
    ]


def resolve(served: ServedModel, path: str) -> Route | None:
    if not path.startswith(_MODELS):
        return None
    if path.endswith("/infer"):
        _check_model_path(served, path[len(_MODELS) : -len("/infer")])
        return Route(path, score=infer)
    return Route(path, page=_model_page(path[len(_MODELS) :]))


def openapi(served: ServedModel) -> dict[str, Any]:
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": served.signature.input_names},
            # [rows, ...per-row sizes]: at least one row (an empty batch has nothing to score).
            "shape": {
                "type": "array",
                "prefixItems": [{"type": "integer", "minimum": 1}],
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
            },
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "data": {"type": "array"},
            "parameters": {"type": ["object", "null"]},
        },
    }
    request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "enum": served.output_names}},
                },
            },
            "parameters": {"type": ["object", "null"]},
        },
    }
    infer_op = {
        "summary": "Open Inference Protocol V2 inference",
        "requestBody": schema.json_body(request, {"inputs": schema.example_tensors(served)}),
        "responses": {
            **schema.ok({"type": "object"}),
            **schema.errors(400, 404, 413, 415, 422, 500, 504),
        },
    }
    simple_get = {"responses": schema.ok({"type": "object"})}
    model = schema.model_params(served)
    model_get = {
        "parameters": model,
        "responses": {**schema.ok({"type": "object"}), **schema.errors(404)},
    }
    return {
        "/v2": {"get": {"summary": "Server metadata", **simple_get}},
        "/v2/health/live": {"get": {"summary": "Liveness", **simple_get}},
        "/v2/health/ready": {"get": {"summary": "Readiness", **simple_get}},
        "/v2/models/{model_name}": {
            "get": {"summary": "Model metadata: inputs, outputs, digest, run", **model_get}
        },
        "/v2/models/{model_name}/ready": {"get": model_get},
        "/v2/models/{model_name}/infer": {"post": {**infer_op, "parameters": model}},
        "/v2/models/{model_name}/versions/{model_version}/infer": {
            "post": {**infer_op, "parameters": schema.model_params(served, version=True)}
        },
    }


PROTOCOL = Protocol("v2", routes, openapi, resolve, prefix="/v2")
