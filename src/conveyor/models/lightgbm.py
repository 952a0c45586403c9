"""LightGBM native text models (``model.txt``, ``.lgbm``), scored with ``Booster.predict``.

Objectives ``binary`` and ``multiclass``/``softmax`` give ``label`` and
``probabilities`` (classes ``0..k-1``); anything else gives ``prediction``.
Inputs are one scalar field per feature name, or a tensor field ``x`` when
the names are LightGBM's defaults (``Column_0``...); a feature fitted on a
pandas ``category`` column is a ``category`` field with its categories.
Loading parses text and runs no code from the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conveyor.errors import ModelError
from conveyor.models.base import Batch, Model, Signature
from conveyor.models.xgboost import booster_signature, classify, matrix

__all__ = ["FORMAT", "LightGBMModel"]


def _header(path: Path) -> dict[str, str]:
    """The ``key=value`` lines before the first tree of a LightGBM text model."""
    header: dict[str, str] = {}
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        if handle.readline().strip() != "tree":
            raise ModelError(f"{path}: not a LightGBM text model (it does not start with 'tree')")
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("Tree="):
                break
            key, _, value = line.partition("=")
            header[key] = value
    return header


@dataclass
class LightGBMModel:
    """A LightGBM Booster behind the Model protocol."""

    booster: Any = field(repr=False)
    signature: Signature
    format: str = "lightgbm"

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Score a column-oriented batch; one entry per row in every output."""
        import numpy as np

        raw = self.booster.predict(matrix(self.signature, batch), num_threads=1)
        if self.signature.task == "classification":
            return classify(self.signature, raw)
        return {"prediction": np.asarray(raw, dtype=np.float64)}


@dataclass(frozen=True)
class _LightGBMFormat:
    name: str = "lightgbm"
    suffixes: Sequence[str] = (".lgbm", ".txt")

    def load(self, path: Path, *, trusted: bool = False) -> Model:
        header = _header(Path(path))
        try:
            import lightgbm as lgb  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise ModelError(
                f"{path}: serving LightGBM models needs lightgbm: pip install 'conveyor[lightgbm]'"
            ) from exc
        try:
            booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"{path}: LightGBM cannot read the model ({exc})") from exc
        objective = header.get("objective", "").split(" ")[0]
        names = booster.feature_name()
        default = [f"Column_{i}" for i in range(booster.num_feature())]
        classification = objective in ("binary", "multiclass", "softmax", "multiclassova")
        sig = booster_signature(
            None if names == default else names,
            booster.num_feature(),
            "classification" if classification else "regression",
            2 if objective == "binary" else int(header.get("num_class", "1")),
            probabilities=True,
        )
        sig = _with_categories(sig, header, booster.pandas_categorical)
        return LightGBMModel(booster=booster, signature=sig)


def _with_categories(sig: Signature, header: dict[str, str], pandas_categorical: Any) -> Signature:
    """Categorical features (fitted on pandas ``category`` columns) take their category names.

    ``feature_infos`` lists a numeric feature as ``[min:max]`` and a
    categorical one by its codes; ``pandas_categorical`` holds the
    categories of each categorical column, in order. Scoring passes each
    category's code, as LightGBM does for a DataFrame.
    """
    infos = header.get("feature_infos", "").split(" ")
    if not pandas_categorical or len(infos) != len(sig.inputs) or sig.inputs[0].shape:
        return sig
    categorical = [i for i, info in enumerate(infos) if info != "none" and not info.startswith("[")]
    if len(categorical) != len(pandas_categorical):
        return sig
    inputs = list(sig.inputs)
    for i, categories in zip(categorical, pandas_categorical, strict=True):
        inputs[i] = replace(inputs[i], dtype="category", values=tuple(categories))
    return replace(sig, inputs=tuple(inputs))


FORMAT = _LightGBMFormat()
