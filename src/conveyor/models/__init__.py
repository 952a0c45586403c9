"""Model formats behind one load / predict / signature protocol.

``load_model(path)`` picks the format by file suffix (or directory layout)
and imports that format's module only then, so heavy libraries load lazily.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from conveyor.errors import ModelError
from conveyor.models.base import Batch, Field, Model, ModelFormat, Signature

__all__ = ["Batch", "Field", "Model", "ModelFormat", "Signature", "format_for", "load_model"]

#: suffix -> "module:attribute" of the ModelFormat that reads it.
_BY_SUFFIX: dict[str, str] = {
    ".skops": "conveyor.models.sklearn:FORMAT",
    ".pkl": "conveyor.models.sklearn:PICKLE_FORMAT",
    ".pickle": "conveyor.models.sklearn:PICKLE_FORMAT",
    ".joblib": "conveyor.models.sklearn:PICKLE_FORMAT",
    ".pmml": "conveyor.models.pmml:FORMAT",
    ".onnx": "conveyor.models.onnx:FORMAT",
    ".ubj": "conveyor.models.xgboost:FORMAT",
    ".json": "conveyor.models.xgboost:FORMAT",
    ".lgbm": "conveyor.models.lightgbm:FORMAT",
    ".txt": "conveyor.models.lightgbm:FORMAT",
}


def format_for(path: Path) -> ModelFormat:
    """The format that reads ``path``, or a ModelError naming the known suffixes."""
    target = _BY_SUFFIX.get(path.suffix.lower())
    if target is None:
        known = ", ".join(sorted(_BY_SUFFIX))
        raise ModelError(
            f"{path}: no model format reads files ending in {path.suffix or '(no suffix)'!r}",
            hint=f"Known suffixes: {known}.",
        )
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"{path}: the {module_name.rsplit('.', 1)[-1]} format needs a package that is "
            f"not installed ({exc.name})"
        ) from exc
    fmt: ModelFormat = getattr(module, attr)
    return fmt


def load_model(path: str | Path, *, trusted: bool = False) -> Model:
    """Load a model file with the format its suffix names."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such model file")
    return format_for(p).load(p, trusted=trusted)
