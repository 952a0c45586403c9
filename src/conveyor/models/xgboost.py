"""XGBoost native models (``.ubj`` and XGBoost's ``.json``), scored with ``inplace_predict``.

The objective in the model decides the outputs: ``binary:logistic`` and
``multi:softprob`` give ``label`` and ``probabilities`` (classes ``0..k-1``,
as XGBoost stores no class names); ``multi:softmax`` gives ``label``;
anything else gives ``prediction``. Inputs are one scalar field per named
feature, or a tensor field ``x`` of shape ``(n_features,)`` when the model
has no feature names. Loading runs no code from the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ModelError
from conveyor.models.base import Batch, Field, Model, Signature

__all__ = ["FORMAT", "XGBoostModel"]


def _objective(booster: Any) -> tuple[str, int]:
    config = json.loads(booster.save_config())
    learner = config["learner"]
    name = str(learner["objective"]["name"])
    classes = int(learner["learner_model_param"].get("num_class", "0") or 0)
    return name, classes


def booster_signature(
    names: Sequence[str] | None, n_features: int, task: str, n_classes: int, probabilities: bool
) -> Signature:
    """The signature of a gradient-boosted tree booster (shared with the LightGBM format)."""
    # Tree boosters treat NaN as "missing" and route it, so every input is optional.
    if names:
        inputs: tuple[Field, ...] = tuple(Field(str(n), "float64", optional=True) for n in names)
    else:
        inputs = (Field("x", "float64", shape=(n_features,), optional=True),)
    if task == "classification":
        classes = tuple(range(max(n_classes, 2)))
        outputs = [Field("label", "int64", values=classes)]
        if probabilities:
            outputs.append(Field("probabilities", "float64", shape=(len(classes),)))
        return Signature(inputs, tuple(outputs), classes=classes, task=task)
    return Signature(inputs, (Field("prediction", "float64"),), task="regression")


def matrix(signature: Signature, batch: Batch) -> Any:
    """A float matrix in signature order from a column batch."""
    import numpy as np

    fields = signature.inputs
    if len(fields) == 1 and fields[0].shape:
        array = np.asarray(batch[fields[0].name], dtype=np.float64)
        return array.reshape(array.shape[0] if array.ndim else 1, -1)
    return np.column_stack([_numbers(f, batch[f.name]) for f in fields])


def _numbers(f: Field, values: Any) -> Any:
    """A column as floats; a categorical one as its categories' codes (NaN when missing)."""
    import numpy as np

    if f.dtype != "category":
        return np.asarray(values, dtype=np.float64)
    codes = {value: float(i) for i, value in enumerate(f.values or ())}
    return np.array([codes.get(v, np.nan) for v in np.asarray(values).tolist()], dtype=np.float64)


def classify(signature: Signature, scores: Any) -> dict[str, Any]:
    """label/probabilities from a probability vector (binary) or matrix (multi-class)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    proba = np.column_stack([1.0 - scores, scores]) if scores.ndim == 1 else scores
    return {"label": proba.argmax(axis=1).astype(np.int64), "probabilities": proba}


@dataclass
class XGBoostModel:
    """An XGBoost Booster behind the Model protocol."""

    booster: Any = field(repr=False)
    signature: Signature
    objective: str
    format: str = "xgboost"

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Score a column-oriented batch; one entry per row in every output."""
        import numpy as np

        raw = self.booster.inplace_predict(matrix(self.signature, batch))
        if self.objective == "multi:softmax":
            return {"label": np.asarray(raw).astype(np.int64)}
        if self.signature.task == "classification":
            return classify(self.signature, raw)
        return {"prediction": np.asarray(raw, dtype=np.float64)}


@dataclass(frozen=True)
class _XGBoostFormat:
    name: str = "xgboost"
    suffixes: Sequence[str] = (".ubj", ".json")

    def load(self, path: Path, *, trusted: bool = False) -> Model:
        try:
            import xgboost as xgb  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise ModelError(
                f"{path}: serving XGBoost models needs xgboost: pip install 'conveyor[xgboost]'"
            ) from exc
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
            objective, n_classes = _objective(booster)
        except (xgb.core.XGBoostError, ValueError, KeyError) as exc:
            raise ModelError(f"{path}: not an XGBoost model XGBoost can read ({exc})") from exc
        booster.set_param({"nthread": 1})  # one process per core already
        task = (
            "classification"
            if objective.startswith(("binary:logistic", "multi:"))
            else "regression"
        )
        sig = booster_signature(
            booster.feature_names,
            booster.num_features(),
            task,
            n_classes,
            probabilities=objective != "multi:softmax",
        )
        return XGBoostModel(booster=booster, signature=sig, objective=objective)


FORMAT = _XGBoostFormat()
