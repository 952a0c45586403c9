"""The one contract every model format implements: load, predict, signature.

A format module (``conveyor.models.sklearn``, ``conveyor.models.pmml``, ...)
provides a :class:`ModelFormat`; loading a file yields a :class:`Model`.
Serving, the stream ``score`` app and ``conveyor.save_model`` only ever talk
to these two protocols.

Example::

    model = load_model("model.skops")
    model.signature.inputs[0]          # Field(name='sepal length (cm)', dtype='float64')
    model.predict({"sepal length (cm)": [5.1], ...})["label"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Batch", "Field", "Model", "ModelFormat", "Signature"]

#: A batch of rows, column-oriented: field name -> sequence or 1-D/2-D array.
Batch = Mapping[str, Any]

#: dtypes a Field may declare (NumPy names; "string" for text, "bool" for booleans).
DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float32",
        "float64",
        "string",
        "object",
    }
)


@dataclass(frozen=True)
class Field:
    """One named input or output column.

    ``shape`` is the per-row shape: ``()`` for a scalar column, ``(20,)`` for
    a 20-wide tensor column. ``values`` lists the allowed values of a
    categorical field when they are known.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    optional: bool = False
    values: tuple[Any, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["values"] = list(self.values) if self.values is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Field:
        values = data.get("values")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            shape=tuple(int(n) for n in data.get("shape", ())),
            optional=bool(data.get("optional", False)),
            values=tuple(values) if values is not None else None,
        )


@dataclass(frozen=True)
class Signature:
    """What a model takes and returns; ``classes`` is set for classifiers."""

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...] = ()
    classes: tuple[Any, ...] | None = None
    task: str = "unknown"  # "classification", "regression", "clustering", ...
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [f.to_json() for f in self.inputs],
            "outputs": [f.to_json() for f in self.outputs],
            "classes": list(self.classes) if self.classes is not None else None,
            "task": self.task,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        classes = data.get("classes")
        return cls(
            inputs=tuple(Field.from_json(f) for f in data.get("inputs", ())),
            outputs=tuple(Field.from_json(f) for f in data.get("outputs", ())),
            classes=tuple(classes) if classes is not None else None,
            task=str(data.get("task", "unknown")),
            extra=dict(data.get("extra", {})),
        )


@runtime_checkable
class Model(Protocol):
    """A loaded model, ready to score whole batches."""

    @property
    def format(self) -> str:
        """The format's name, e.g. ``"sklearn"`` or ``"pmml"``."""
        ...

    @property
    def signature(self) -> Signature: ...

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Score a column-oriented batch; returns output name -> array, one entry per row."""
        ...


class ModelFormat(Protocol):
    """A family of model files: recognises, loads and (optionally) saves them."""

    name: str
    #: File suffixes this format claims, e.g. (".skops",).
    suffixes: Sequence[str]

    def load(self, path: Path, *, trusted: bool = False) -> Model: ...
