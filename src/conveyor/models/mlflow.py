"""MLflow model directories (an ``MLmodel`` file plus artifacts), without MLflow installed.

The ``MLmodel`` YAML is read directly. The ``sklearn`` flavour loads the
pickled model (so it needs ``trusted=True``, as any pickle does) or, for
``serialization_format: skops``, the skops file under the operator's trusted
types; the ``onnx`` flavour loads ``model.onnx`` through onnxruntime. An
MLflow signature, when present, replaces the inputs inferred from the
model, so clients keep the column names and types MLflow showed them.

>>> info = read_mlmodel(Path("mlruns/0/abc/artifacts/model"))   # doctest: +SKIP
>>> info.run_id, sorted(info.flavors)                           # doctest: +SKIP
('abc', ['onnx', 'python_function'])
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from conveyor.config import Settings
from conveyor.errors import ModelError
from conveyor.models.base import Field, Model, Signature

__all__ = ["FORMAT", "MLmodelInfo", "read_mlmodel"]

#: MLflow column types -> Field dtypes.
_COLSPEC_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
}


@dataclass(frozen=True)
class MLmodelInfo:
    """What an ``MLmodel`` file says: flavours, run id, signature inputs."""

    path: Path
    flavors: Mapping[str, Mapping[str, Any]]
    run_id: str | None
    inputs: tuple[Field, ...] | None


def _inputs(raw: Any, where: Path) -> tuple[Field, ...] | None:
    if not raw:
        return None
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ModelError(f"{where}: the signature inputs are not JSON ({exc})") from exc
    fields: list[Field] = []
    for i, spec in enumerate(specs):
        if spec.get("type") == "tensor":
            tensor = spec.get("tensor-spec", {})
            dims = [int(d) for d in tensor.get("shape", [-1])]
            dtype = str(tensor.get("dtype", "float64"))
            dtype = "string" if dtype in ("str", "object") else dtype
            fields.append(
                Field(str(spec.get("name", "x" if i == 0 else f"x{i}")), dtype, tuple(dims[1:]))
            )
            continue
        kind = spec.get("type")
        if kind not in _COLSPEC_TYPES:
            raise ModelError(
                f"{where}: input {spec.get('name', i)!r} has MLflow type {kind!r}, which "
                f"Conveyor cannot serve (known: {', '.join(sorted(_COLSPEC_TYPES))})"
            )
        name = spec.get("name", str(i))
        optional = spec.get("required", True) is False
        fields.append(Field(str(name), _COLSPEC_TYPES[kind], optional=optional))
    return tuple(fields)


def read_mlmodel(directory: Path) -> MLmodelInfo:
    """Parse ``directory/MLmodel``; ModelError when it is missing or malformed."""
    import yaml  # type: ignore[import-untyped]

    path = Path(directory) / "MLmodel"
    if not path.is_file():
        raise ModelError(f"{directory}: not an MLflow model directory (no MLmodel file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read the MLmodel file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ModelError(f"{path}: the MLmodel file has no 'flavors' mapping")
    signature = data.get("signature") or {}
    return MLmodelInfo(
        path=Path(directory),
        flavors=data["flavors"],
        run_id=str(data["run_id"]) if data.get("run_id") else None,
        inputs=_inputs(signature.get("inputs"), path),
    )


def _inside(directory: Path, name: str) -> Path:
    """``directory/name``, refusing names that leave the model directory."""
    target = (directory / name).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise ModelError(
            f"{directory}: MLmodel names {name!r}, which is outside the model directory"
        )
    return target


def _with_inputs(model: Model, inputs: tuple[Field, ...] | None, where: Path) -> Model:
    if inputs is None or not hasattr(model, "__dataclass_fields__"):
        return model
    sig = model.signature
    if len(inputs) == 1 and len(sig.inputs) == 1 and sig.inputs[0].shape:
        # A tensor spec: keep the model's own field name, take MLflow's dtype and shape.
        inputs = (dataclasses.replace(sig.inputs[0], dtype=inputs[0].dtype),)
    elif not any(f.shape for f in inputs) and model.format == "onnx":
        from conveyor.models.onnx import OnnxModel, with_columns

        # Column specs over a graph's tensor(s): the columns feed it as MLflow feeds them.
        return with_columns(cast(OnnxModel, model), inputs, str(where))
    new = Signature(
        inputs=inputs, outputs=sig.outputs, classes=sig.classes, task=sig.task, extra=sig.extra
    )
    replaced: Model = dataclasses.replace(cast(Any, model), signature=new)
    return replaced


@dataclass(frozen=True)
class _MlflowFormat:
    name: str = "mlflow"
    suffixes: Sequence[str] = ()

    def load(self, path: Path, *, trusted: bool = False, settings: Settings | None = None) -> Model:
        directory = Path(path)
        info = read_mlmodel(directory)
        flavors = info.flavors
        if "sklearn" in flavors:
            from conveyor.models import sklearn

            flavor = flavors["sklearn"]
            artifact = _inside(directory, str(flavor.get("pickled_model", "model.pkl")))
            if flavor.get("serialization_format") == "skops":
                model: Model = sklearn.FORMAT.load(artifact, trusted=trusted, settings=settings)
            else:
                model = sklearn.PICKLE_FORMAT.load(artifact, trusted=trusted)
        elif "onnx" in flavors:
            from conveyor.models import onnx

            artifact = _inside(directory, str(flavors["onnx"].get("data", "model.onnx")))
            model = onnx.FORMAT.load(artifact, trusted=trusted)
        else:
            raise ModelError(
                f"{directory}: MLflow flavour(s) {', '.join(sorted(flavors))} are not supported",
                hint="Conveyor serves the sklearn and onnx flavours of MLflow models.",
            )
        return _with_inputs(model, info.inputs, directory)


FORMAT = _MlflowFormat()
