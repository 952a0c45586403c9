"""ONNX models through onnxruntime.

The signature comes from the graph: one input of shape ``[batch, n]`` becomes
a tensor field of shape ``(n,)``; inputs of shape ``[batch]`` or
``[batch, 1]`` become scalar fields. Outputs keep their graph names, except
the converters' conventional classifier outputs (``output_label``,
``output_probability`` from skl2onnx, ``label``/``probabilities`` from
onnxmltools), which become ``label`` and ``probabilities`` so every
classifier looks the same to the service. A ZipMap probability output (a
list of ``{class: p}`` maps) is turned into a rows x classes matrix.

The inference session is created on first use in each process, because
onnxruntime's thread pools do not survive ``fork``; the model bytes are read
once, before the server forks, and shared.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ModelError
from conveyor.models.base import Batch, Field, Model, Signature

__all__ = ["FORMAT", "OnnxModel", "with_columns"]

_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float32",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
_LABEL_NAMES = ("output_label", "label")
_PROBA_NAMES = ("output_probability", "probabilities", "probability")


def _classes_from_graph(data: bytes) -> tuple[Any, ...] | None:
    """Class labels from a classifier node's attributes, when the onnx package is present."""
    try:
        import onnx  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    graph = onnx.load_from_string(data).graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                return tuple(int(v) for v in attr.ints)
            if attr.name == "classlabels_strings" and attr.strings:
                return tuple(s.decode("utf-8") for s in attr.strings)
    return None


def _new_session(data: bytes) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

    options = ort.SessionOptions()
    # One thread per session: the server runs one process per core already.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model ({exc})") from exc


@dataclass
class OnnxModel:
    """An ONNX graph behind the Model protocol."""

    data: bytes = field(repr=False)
    signature: Signature
    graph_inputs: tuple[tuple[str, str, int], ...]  # (graph name, dtype, rank)
    graph_outputs: tuple[tuple[str, str], ...]  # (graph name, served name)
    #: Per graph input, the signature fields that feed it; several are stacked as
    #: columns (an MLflow column signature over one tensor). Empty: field i feeds input i.
    sources: tuple[tuple[str, ...], ...] = ()
    format: str = "onnx"
    _session: Any = field(default=None, repr=False)
    _pid: int = field(default=-1, repr=False)

    def session(self) -> Any:
        if self._session is None or self._pid != os.getpid():
            self._session = _new_session(self.data)
            self._pid = os.getpid()
        return self._session

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Score a column-oriented batch; one entry per row in every output."""
        import numpy as np

        feeds: dict[str, Any] = {}
        sources = self.sources or tuple((f.name,) for f in self.signature.inputs)
        for (graph_name, dtype, rank), names in zip(self.graph_inputs, sources, strict=True):
            if len(names) == 1:
                array = np.asarray(batch[names[0]])
            else:
                array = np.column_stack([np.asarray(batch[name]) for name in names])
            array = array.astype(object if dtype == "string" else dtype, copy=False)
            if rank == 2 and array.ndim == 1:
                array = array.reshape(-1, 1)
            feeds[graph_name] = array
        wanted = [g for g, _ in self.graph_outputs]
        try:
            results = self.session().run(wanted, feeds)
        except Exception as exc:
            raise ValueError(f"onnxruntime rejected the input: {exc}") from exc
        out: dict[str, Any] = {}
        for (_, served), value in zip(self.graph_outputs, results, strict=True):
            if isinstance(value, list) and value and isinstance(value[0], dict):
                # A ZipMap output: one {class: probability} map per row.
                keys = list(self.signature.classes or value[0].keys())
                out[served] = np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
            else:
                out[served] = np.asarray(value)
        return out


def _signature(session: Any, classes: tuple[Any, ...] | None) -> tuple[Signature, Any, Any]:
    inputs: list[Field] = []
    graph_inputs: list[tuple[str, str, int]] = []
    meta_inputs = session.get_inputs()
    for meta in meta_inputs:
        dtype = _ONNX_TYPES.get(meta.type)
        if dtype is None:
            raise ModelError(f"input {meta.name!r} has type {meta.type}, which cannot be served")
        dims = list(meta.shape)
        per_row = [d for d in dims[1:] if not (d == 1 and len(dims) == 2)]
        if any(not isinstance(d, int) for d in per_row):
            raise ModelError(
                f"input {meta.name!r} has symbolic per-row dimensions {dims}; only the batch "
                "dimension may be unknown"
            )
        shape = tuple(int(d) for d in per_row)
        inputs.append(Field(meta.name, dtype, shape=shape))
        graph_inputs.append((meta.name, dtype, len(dims)))
    outputs: list[Field] = []
    graph_outputs: list[tuple[str, str]] = []
    task = "unknown"
    for meta in session.get_outputs():
        served = meta.name
        if meta.name in _LABEL_NAMES:
            served = "label"
            task = "classification"
        elif meta.name in _PROBA_NAMES:
            served = "probabilities"
        elif meta.name == "variable" and len(session.get_outputs()) == 1:
            served, task = "prediction", "regression"
        dtype = _ONNX_TYPES.get(meta.type, "float64")
        width = len(classes) if served == "probabilities" and classes else None
        out_shape: tuple[int, ...] = (width,) if width else ()
        if served != "probabilities" and meta.type.startswith("tensor"):
            out_dims = list(meta.shape)[1:]
            if out_dims and all(isinstance(d, int) for d in out_dims) and out_dims != [1]:
                out_shape = tuple(int(d) for d in out_dims)
        outputs.append(Field(served, "float64" if served == "probabilities" else dtype, out_shape))
        graph_outputs.append((meta.name, served))
    if task == "classification" and classes is not None:
        outputs = [
            Field(f.name, f.dtype, f.shape, values=classes) if f.name == "label" else f
            for f in outputs
        ]
    sig = Signature(
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        classes=classes if task == "classification" else None,
        task=task,
    )
    return sig, tuple(graph_inputs), tuple(graph_outputs)


def with_columns(model: OnnxModel, columns: tuple[Field, ...], where: str) -> OnnxModel:
    """``model`` taking named scalar columns (an MLflow column signature) instead of its tensors.

    As MLflow's ONNX flavour feeds a DataFrame: a graph with one input gets all
    the columns side by side, in signature order; a graph with several inputs
    gets each input from the column of the same name.
    """
    names = tuple(f.name for f in columns)
    graph_names = [g for g, _, _ in model.graph_inputs]
    sources: tuple[tuple[str, ...], ...]
    if len(graph_names) == 1:
        graph_field = model.signature.inputs[0]
        width = graph_field.shape[0] if len(graph_field.shape) == 1 else None
        if (graph_field.shape and width is None) or (width or 1) != len(names):
            raise ModelError(
                f"{where}: the signature names {len(names)} column(s) but the graph input "
                f"{graph_names[0]!r} takes {expected_width(graph_field)} value(s) per row"
            )
        sources = (names,)
    else:
        missing = [g for g in graph_names if g not in names]
        if missing:
            raise ModelError(
                f"{where}: the graph takes input(s) {', '.join(map(repr, missing))}, which "
                f"the signature's columns ({', '.join(names)}) do not name"
            )
        wide = [f.name for f in model.signature.inputs if f.shape]
        if wide:
            raise ModelError(
                f"{where}: graph input(s) {', '.join(map(repr, wide))} take several values per "
                "row, which one named column cannot fill"
            )
        sources = tuple((g,) for g in graph_names)
        unused = [n for n in names if n not in graph_names]
        if unused:
            raise ModelError(
                f"{where}: signature column(s) {', '.join(map(repr, unused))} feed no graph input "
                f"(the graph takes {', '.join(graph_names)})"
            )
    sig = dataclasses.replace(model.signature, inputs=columns)
    return dataclasses.replace(model, signature=sig, sources=sources)


def expected_width(f: Field) -> str:
    """Per-row values a field holds, as a phrase: ``20``, ``1``, ``4x5``."""
    return "x".join(str(n) for n in f.shape) if f.shape else "1"


def load_bytes(data: bytes, where: str) -> OnnxModel:
    """A model from ONNX bytes; ``where`` names the source in errors."""
    try:
        session = _new_session(data)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc.message}") from exc
    try:
        sig, graph_inputs, graph_outputs = _signature(session, _classes_from_graph(data))
    except ModelError as exc:
        raise ModelError(f"{where}: {exc.message}") from exc
    return OnnxModel(
        data=data,
        signature=sig,
        graph_inputs=graph_inputs,
        graph_outputs=graph_outputs,
        _session=session,
        _pid=os.getpid(),
    )


@dataclass(frozen=True)
class _OnnxFormat:
    name: str = "onnx"
    suffixes: Sequence[str] = (".onnx",)

    def load(self, path: Path, *, trusted: bool = False) -> Model:
        try:
            import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        except ImportError as exc:
            raise ModelError(
                f"{path}: serving ONNX models needs onnxruntime: pip install 'conveyor[onnx]'"
            ) from exc
        return load_bytes(Path(path).read_bytes(), str(path))


FORMAT = _OnnxFormat()
