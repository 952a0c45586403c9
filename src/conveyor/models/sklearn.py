"""scikit-learn models: skops files by default, pickle/joblib only when the operator trusts them.

Loading a ``.skops`` file trusts skops' own default types plus the types the
operator lists in ``CONVEYOR_TRUSTED_TYPES`` (``Settings.trusted_types``) —
never the types the file asks for. Loading pickle runs code from the file, so
it needs ``trusted=True`` (``conveyor serve --trust``).

Signatures (see :func:`signature_of`):

* an estimator fitted on a DataFrame (``feature_names_in_``) takes one scalar
  field per column, named like the column;
* an estimator fitted on an array takes a single tensor field ``x`` of shape
  ``(n_features,)``: one Open Inference Protocol tensor ``[batch, n]``, one
  MLflow ``instances`` matrix, one ``{"x": [...]}`` record — rather than
  twenty made-up column names.

Outputs: classifiers return ``label`` (one class per row) and, when the
estimator has ``predict_proba``, ``probabilities`` (rows x classes, columns
in ``Signature.classes`` order); regressors return ``prediction``;
clusterers return ``cluster``.

Tree ensembles (random forests, extra trees, gradient boosting, histogram
gradient boosting, single trees) are compiled to flat arrays at load time and
scored without scikit-learn's per-call overhead, with identical results (see
:mod:`conveyor.models.trees`).

>>> sig = save(estimator, Path("model.skops"))     # doctest: +SKIP
>>> FORMAT.load(Path("model.skops")).predict({"x": [[0.1] * 20]})["label"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.config import Settings, get_settings
from conveyor.errors import ModelError, UntrustedModelError
from conveyor.models.base import Batch, Field, Model, Signature
from conveyor.models.trees import CompiledTrees, compile_estimator

__all__ = ["FORMAT", "PICKLE_FORMAT", "SklearnModel", "save", "signature_of"]

#: The tensor field an estimator fitted without column names takes.
TENSOR_FIELD = "x"

#: Attribute under which ``save`` stores the signature (JSON) in the skops file.
SIGNATURE_ATTRIBUTE = "_conveyor_signature"

#: Final estimators whose ``predict`` is exactly ``classes_[argmax(predict_proba)]``;
#: for them one predict_proba call yields both outputs (half the scoring cost).
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "LogisticRegression",
        "RandomForestClassifier",
    }
)

_NO_NAMES_WARNING = "X does not have valid feature names"


def _dtype_name(dtype: Any) -> str:
    """The Field dtype for a NumPy or pandas dtype.

    pandas' ``category`` stays ``category`` (its categories go in
    ``Field.values``); datetimes keep their unit and zone, e.g.
    ``datetime64[ns]`` or ``datetime64[ns, UTC]``.
    """
    if str(dtype) == "category":
        return "category"
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return "bool"
    if kind in "iuf":
        return str(dtype.name) if dtype.name != "float16" else "float32"
    if kind == "M":
        return str(dtype)
    return "string"


def _example_field(name: str, example: Any, dtype: Any) -> Field:
    """The field of one example column: its type, categories, and whether it may be missing."""
    dtype_name = _dtype_name(dtype)
    values: tuple[Any, ...] | None = None
    if dtype_name == "category":
        values = tuple(dtype.categories.tolist())
    # A column the example shows with missing values may be missing in requests too
    # (an imputer, or a model that routes missing values, takes them).
    optional = example is not None and bool(example[name].isna().any())
    return Field(name, dtype_name, optional=optional, values=values)


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    if steps:
        return _final_step(steps[-1][1])
    return estimator


def _task_of(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    final = _final_step(estimator)
    tags = getattr(final, "__sklearn_tags__", None)
    estimator_type = tags().estimator_type if tags is not None else None
    if estimator_type == "clusterer" or hasattr(final, "cluster_centers_"):
        return "clustering"
    if estimator_type == "outlier_detector":
        return "outlier_detection"
    return "unknown"


def _example_columns(example: Any) -> dict[str, Any]:
    """Column name -> dtype of an example DataFrame (empty for anything else)."""
    dtypes = getattr(example, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return {}
    return {str(name): dtype for name, dtype in dtypes.items()}


def _example_has_missing(example: Any) -> bool:
    """Whether an example array holds NaN (a model fitted on an array that takes them)."""
    import numpy as np

    try:
        array = np.asarray(example, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.isnan(array).any())


def signature_of(estimator: Any, example: Any | None = None) -> Signature:
    """The signature of a fitted estimator; dtypes come from ``example`` when given.

    Raises ModelError when the estimator is not fitted or cannot predict.
    """
    import numpy as np

    if not hasattr(estimator, "predict"):
        raise ModelError(
            f"{type(estimator).__name__} has no predict method; only predictors can be served"
        )
    names = getattr(estimator, "feature_names_in_", None)
    n_features = getattr(estimator, "n_features_in_", None)
    if names is None and n_features is None:
        raise ModelError(
            f"{type(estimator).__name__} is not fitted (it has neither feature_names_in_ "
            "nor n_features_in_); fit it before saving"
        )
    inputs: tuple[Field, ...]
    if names is not None:
        example_dtypes = _example_columns(example)
        inputs = tuple(
            _example_field(str(name), example, example_dtypes[str(name)])
            if str(name) in example_dtypes
            else Field(str(name), "float64")
            for name in names
        )
    else:
        dtype = "float64"
        if example is not None and hasattr(example, "dtype"):
            dtype = _dtype_name(example.dtype)
        optional = example is not None and _example_has_missing(example)
        inputs = (Field(TENSOR_FIELD, dtype, shape=(int(n_features or 0),), optional=optional),)

    task = _task_of(estimator)
    classes = getattr(estimator, "classes_", None)
    outputs: list[Field] = []
    class_tuple: tuple[Any, ...] | None = None
    if task == "classification" and classes is not None:
        classes_array = np.asarray(classes)
        class_tuple = tuple(classes_array.tolist())
        outputs.append(Field("label", _dtype_name(classes_array.dtype), values=class_tuple))
        if hasattr(estimator, "predict_proba"):
            outputs.append(Field("probabilities", "float64", shape=(len(class_tuple),)))
    elif task == "clustering":
        outputs.append(Field("cluster", "int64"))
    elif task == "outlier_detection":
        outputs.append(Field("prediction", "int64", values=(-1, 1)))  # -1 outlier, 1 inlier
    else:
        n_outputs = int(getattr(_final_step(estimator), "n_outputs_", 1) or 1)
        shape = (n_outputs,) if n_outputs > 1 else ()
        outputs.append(Field("prediction", "float64", shape=shape))
    return Signature(
        inputs=inputs,
        outputs=tuple(outputs),
        classes=class_tuple,
        task=task,
        extra={"estimator": type(estimator).__name__},
    )


def _needs_dataframe(estimator: Any) -> bool:
    """True when the estimator selects columns by name (a ColumnTransformer inside)."""
    from sklearn.compose import ColumnTransformer

    if isinstance(estimator, ColumnTransformer):
        return True
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    return any(isinstance(value, ColumnTransformer) for value in params.values())


@dataclass
class SklearnModel:
    """A fitted estimator behind the Model protocol."""

    estimator: Any
    signature: Signature
    format: str = "sklearn"
    _frame: bool = field(default=False, repr=False)
    _argmax: bool = field(default=False, repr=False)
    #: The estimator's trees as arrays (conveyor.models.trees), when it is a supported ensemble.
    _compiled: CompiledTrees | None = field(default=None, repr=False)
    _outputs: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        # Categories and datetimes reach the model as the pandas dtypes it was fitted on.
        self._frame = _needs_dataframe(self.estimator) or any(
            _typed_column(f) for f in self.signature.inputs
        )
        final = _final_step(self.estimator)
        self._argmax = type(final).__name__ in _ARGMAX_CLASSIFIERS and hasattr(
            self.estimator, "predict_proba"
        )
        self._compiled = None if self._frame else compile_estimator(self.estimator)
        self._outputs = frozenset(f.name for f in self.signature.outputs)

    def _matrix(self, batch: Batch) -> Any:
        import numpy as np

        fields = self.signature.inputs
        missing = [f.name for f in fields if f.name not in batch]
        if missing:
            raise ModelError(f"the batch lacks input field(s): {', '.join(missing)}")
        if self._frame:
            try:
                import pandas as pd
            except ImportError as exc:
                raise ModelError(
                    "this model selects columns by name (a ColumnTransformer); scoring it "
                    "needs pandas: pip install pandas"
                ) from exc
            return pd.DataFrame({f.name: _frame_column(f, batch[f.name]) for f in fields})
        if len(fields) == 1 and fields[0].shape:
            array = np.asarray(batch[fields[0].name])
            return array.reshape(array.shape[0] if array.ndim else 1, -1)
        columns = [np.asarray(batch[f.name]) for f in fields]
        numeric = all(c.dtype.kind in "biuf" for c in columns)
        return np.column_stack(columns).astype(np.float64 if numeric else object, copy=False)

    def predict_validated(self, batch: Batch) -> dict[str, Any]:
        """Like predict, for a batch already checked against the signature.

        The scoring service calls this after its validation has refused NaN
        and infinity in every required float field, so scikit-learn's own
        finiteness scan (about a sixth of a small predict call) is skipped;
        a signature with optional float fields keeps it. Compiled tree
        ensembles skip scikit-learn altogether.
        """
        x = self._matrix(batch)
        compiled = self._compiled_predict(x)
        if compiled is not None:
            return compiled
        if any(f.optional and f.dtype.startswith("float") for f in self.signature.inputs):
            return self._sklearn_predict(x)
        import sklearn

        with sklearn.config_context(assume_finite=True):
            return self._sklearn_predict(x)

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Score a column-oriented batch; one entry per row in every output."""
        x = self._matrix(batch)
        compiled = self._compiled_predict(x)
        return compiled if compiled is not None else self._sklearn_predict(x)

    def _compiled_predict(self, x: Any) -> dict[str, Any] | None:
        """The compiled trees' outputs (identical to sklearn's), or None to ask sklearn."""
        if self._compiled is None:
            return None
        out = self._compiled.predict(x)
        if out is None:
            return None
        return {name: value for name, value in out.items() if name in self._outputs}

    def _sklearn_predict(self, x: Any) -> dict[str, Any]:
        import numpy as np

        est = self.estimator
        with warnings.catch_warnings():
            # A model fitted on a DataFrame is fed a matrix in signature order;
            # sklearn's "no feature names" warning says nothing useful here.
            warnings.filterwarnings("ignore", message=_NO_NAMES_WARNING, category=UserWarning)
            task = self.signature.task
            if task == "classification":
                has_proba = any(f.name == "probabilities" for f in self.signature.outputs)
                if self._argmax:
                    proba = np.asarray(est.predict_proba(x))
                    label = np.asarray(est.classes_)[proba.argmax(axis=1)]
                    return {"label": label, "probabilities": proba}
                result: dict[str, Any] = {"label": np.asarray(est.predict(x))}
                if has_proba:
                    result["probabilities"] = np.asarray(est.predict_proba(x))
                return result
            if task == "clustering":
                return {"cluster": np.asarray(est.predict(x))}
            return {"prediction": np.asarray(est.predict(x))}


def _typed_column(f: Field) -> bool:
    return f.dtype == "category" or f.dtype.startswith("datetime64")


def _frame_column(f: Field, values: Any) -> Any:
    """One DataFrame column of the dtype the model was fitted on."""
    import numpy as np
    import pandas as pd

    if f.dtype == "category":
        return pd.Categorical(np.asarray(values, dtype=object), categories=list(f.values or ()))
    if f.dtype.startswith("datetime64"):
        column = pd.Series(np.asarray(values))
        zone = f.dtype.partition(",")[2].rstrip("]").strip()
        # Serving hands over UTC times; a column fitted with a zone gets it back.
        return column.dt.tz_localize("UTC").dt.tz_convert(zone) if zone else column
    return np.asarray(values)


def _skops_load(path: Path, trusted: bool, settings: Settings | None) -> Any:
    import skops.io as sio

    settings = settings or get_settings()
    operator_trusted = list(settings.trusted_types)
    try:
        wanted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable skops file ({exc})") from exc
    if trusted:
        # The operator passed --trust: they vouch for this file, so everything it holds loads.
        operator_trusted = sorted(set(operator_trusted) | set(wanted))
    refused = [t for t in wanted if t not in operator_trusted]
    if refused:
        raise UntrustedModelError(
            f"{path}: the file needs type(s) that are not trusted: {', '.join(refused)}",
            hint=(
                "If you made this file or trust its source, trust these types with "
                f"CONVEYOR_TRUSTED_TYPES={','.join(refused)} (or pass --trust to "
                "trust everything in this one file)."
            ),
        )
    try:
        return sio.load(path, trusted=operator_trusted or None)
    except Exception as exc:
        raise ModelError(f"{path}: skops could not load the model ({exc})") from exc


def _stored_signature(estimator: Any, inferred: Signature) -> Signature:
    """The signature ``save`` stored in the file, when it still fits the estimator."""
    raw = getattr(estimator, SIGNATURE_ATTRIBUTE, None)
    if not isinstance(raw, str):
        return inferred
    try:
        stored = Signature.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return inferred
    if [(f.name, f.shape) for f in stored.inputs] != [(f.name, f.shape) for f in inferred.inputs]:
        return inferred
    return stored


def _as_model(estimator: Any, path: Path, fmt: str) -> SklearnModel:
    try:
        sig = _stored_signature(estimator, signature_of(estimator))
    except ModelError as exc:
        raise ModelError(f"{path}: {exc.message}") from exc
    return SklearnModel(estimator=estimator, signature=sig, format=fmt)


@dataclass(frozen=True)
class _SkopsFormat:
    name: str = "sklearn"
    suffixes: Sequence[str] = (".skops",)

    def load(self, path: Path, *, trusted: bool = False, settings: Settings | None = None) -> Model:
        return _as_model(_skops_load(Path(path), trusted, settings), Path(path), self.name)


@dataclass(frozen=True)
class _PickleFormat:
    name: str = "pickle"
    suffixes: Sequence[str] = (".pkl", ".pickle", ".joblib")

    def load(self, path: Path, *, trusted: bool = False, settings: Settings | None = None) -> Model:
        path = Path(path)
        if not trusted:
            raise UntrustedModelError(
                f"{path}: refusing to load a pickle/joblib file: unpickling runs any code "
                "the file contains",
                hint=(
                    "Load it only if you made it or trust its source: pass --trust "
                    "(conveyor serve --trust ...), or re-save the model as .skops."
                ),
            )
        import joblib

        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise ModelError(f"{path}: could not unpickle the model ({exc})") from exc
        return _as_model(estimator, path, self.name)


FORMAT = _SkopsFormat()
PICKLE_FORMAT = _PickleFormat()


def save(estimator: Any, path: Path, example: Any | None = None) -> Signature:
    """Write ``estimator`` to ``path`` with skops and return its signature."""
    import skops.io as sio

    sig = signature_of(estimator, example)
    # The signature travels inside the file (a plain string attribute on a
    # shallow copy), so the column types seen in ``example`` survive a reload.
    stamped = copy.copy(estimator)
    setattr(stamped, SIGNATURE_ATTRIBUTE, json.dumps(sig.to_json()))
    try:
        sio.dump(stamped, Path(path))
    except Exception as exc:
        raise ModelError(f"{path}: skops cannot save {type(estimator).__name__} ({exc})") from exc
    return sig
