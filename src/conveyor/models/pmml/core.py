"""What every PMML model element shares: its result, Targets, compile context, registry.

A model element compiles into a :class:`CompiledModel`; ``evaluate(scope)``
adds the model's LocalTransformations to the scope, computes the raw
:class:`Result` (``score``, one implementation per model type), applies
Targets, then computes the Output fields (see ``output.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, coerce, column_dtype, is_missing, parse_scalar
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.expressions import compile_derived_fields
from conveyor.models.pmml.schema import DataField, MiningField, parse_mining_schema
from conveyor.models.pmml.scope import Scope

__all__ = ["MODEL_TAGS", "CompiledModel", "Context", "Result", "build_model"]

#: model element -> "module:class" implementing it (imported on first use).
_MODELS: dict[str, str] = {
    "TreeModel": "tree:TreeModel",
    "MiningModel": "mining:MiningModel",
    "RegressionModel": "regression:RegressionModel",
    "GeneralRegressionModel": "general_regression:GeneralRegressionModel",
    "NaiveBayesModel": "naive_bayes:NaiveBayesModel",
    "NeuralNetwork": "neural:NeuralNetwork",
    "SupportVectorMachineModel": "svm:SupportVectorMachineModel",
    "ClusteringModel": "clustering:ClusteringModel",
    "RuleSetModel": "ruleset:RuleSetModel",
    "AssociationModel": "association:AssociationModel",
    "Scorecard": "scorecard:Scorecard",
    "NearestNeighborModel": "nearest_neighbor:NearestNeighborModel",
}
MODEL_TAGS = frozenset(
    set(_MODELS)
    | {"BaselineModel", "BayesianNetworkModel", "GaussianProcessModel"}
    | {"SequenceModel", "TextModel", "TimeSeriesModel", "AnomalyDetectionModel"}
)


@dataclass
class Result:
    """The raw outcome of one model over a batch: one entry per row everywhere."""

    value: Array
    classes: list[Any] | None = None
    probabilities: dict[Any, Array] | None = None
    entity_id: Array | None = None
    affinity: dict[Any, Array] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Array] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.value)


@dataclass
class Context:
    """What compiling a model needs from the document around it."""

    fields: dict[str, DataField]
    source: str

    def data_field(self, name: str) -> DataField | None:
        return self.fields.get(name)


class Targets:
    """The Targets element: rescaling and limits of regression values; priors and display values."""

    def __init__(self, el: Element | None, float32: bool) -> None:
        self.factor = 1.0
        self.constant = 0.0
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.cast_integer: str | None = None
        self.default: str | None = None
        self.priors: dict[str, float] = {}
        self.display: dict[str, str] = {}
        self.values: list[str] = []
        self.float32 = float32
        target = el.find("Target") if el is not None else None
        if target is None:
            return
        self.factor = float(target.get("rescaleFactor", "1"))
        self.constant = float(target.get("rescaleConstant", "0"))
        mn, mx = target.get("min"), target.get("max")
        self.minimum = float(mn) if mn is not None else None
        self.maximum = float(mx) if mx is not None else None
        self.cast_integer = target.get("castInteger")
        for tv in target.findall("TargetValue"):
            value = tv.get("value")
            if value is None:
                self.default = tv.get("defaultValue")
                continue
            self.values.append(value)
            if tv.get("priorProbability") is not None:
                self.priors[value] = float(tv.get("priorProbability"))
            if tv.get("displayValue") is not None:
                self.display[value] = tv.get("displayValue")

    def apply_regression(self, value: Array) -> Array:
        dtype: Any = np.float32 if self.float32 else np.float64
        out: Array = value.astype(dtype, copy=False)
        if self.minimum is not None or self.maximum is not None:
            out = np.clip(out, self.minimum, self.maximum)
        if self.factor != 1.0:
            out = out * dtype(self.factor)
        if self.constant != 0.0:
            out = out + dtype(self.constant)
        if self.cast_integer is not None:
            if self.cast_integer == "round":
                out = np.floor(out + dtype(0.5))
            elif self.cast_integer == "ceiling":
                out = np.ceil(out)
            else:
                out = np.floor(out)
        if self.default is not None:
            out = np.where(np.isnan(out), dtype(float(self.default)), out)
        return np.asarray(out, dtype=dtype)


class CompiledModel:
    """Base of every model type; subclasses implement ``score``."""

    #: functionName values the model type can evaluate
    functions: ClassVar[tuple[str, ...]] = ("regression", "classification")

    def __init__(self, el: Element, ctx: Context) -> None:
        self.el = el
        self.ctx = ctx
        self.function = el.require("functionName")
        if self.function not in self.functions:
            raise unsupported(el, f"<{el.tag} functionName={self.function!r}>")
        self.float32 = el.get("x-mathContext") == "float"
        self.dtype = np.dtype(np.float32 if self.float32 else np.float64)
        self.mining: list[MiningField] = parse_mining_schema(el.find("MiningSchema"))
        self.target_name: str | None = next(
            (m.name for m in self.mining if m.usage == "target"), None
        )
        self.local = compile_derived_fields(el.find("LocalTransformations"))
        self.targets = Targets(el.find("Targets"), self.float32)
        self._treated = [m for m in self.mining if m.has_treatment and m.usage != "target"]
        from conveyor.models.pmml.output import Output

        self.output = Output(el.find("Output"), self)

    # -- what the subclass provides ------------------------------------------------

    def score(self, scope: Scope) -> Result:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------

    @property
    def target_field(self) -> DataField | None:
        return self.ctx.data_field(self.target_name) if self.target_name else None

    @property
    def target_type(self) -> str:
        df = self.target_field
        if df is not None:
            return df.data_type
        return "string" if self.function in ("classification", "clustering") else "double"

    def declared_classes(self) -> list[Any] | None:
        """Class labels from the target's DataField Values, else from Targets, else None."""
        df = self.target_field
        if df is not None and df.valid:
            return list(df.valid)
        if self.targets.values:
            return [self.label(v) for v in self.targets.values]
        return None

    def label(self, text: str) -> Any:
        """A class label from the document in the target's representation."""
        try:
            return parse_scalar(text, self.target_type)
        except ValueError:
            return text

    def evaluate(self, scope: Scope) -> Result:
        if self.local:
            scope = scope.child(self.local)
        if self._treated:
            scope = self._treat(scope)
        return self.finish(self.score(scope), scope)

    def finish(self, result: Result, scope: Scope) -> Result:
        """Targets, priors and Output fields applied to the raw result ``score`` gave."""
        if self.function == "regression" and result.value.dtype.kind != "O":
            result.value = self.targets.apply_regression(result.value)
        elif self.function == "classification":
            self._apply_priors(result)
        result.outputs = self.output.compute(result, scope)
        return result

    def _treat(self, scope: Scope) -> Scope:
        """A nested model's own MiningSchema treatments (replacement values, outliers)."""
        from conveyor.models.pmml.schema import treat_column

        columns = {}
        for mf in self._treated:
            col = scope.get(mf.name)
            df = self.ctx.data_field(mf.name) or DataField(
                mf.name, "string" if col.dtype.kind == "O" else "double", "continuous"
            )
            miss = is_missing(col)
            mf_as_is = MiningField(
                mf.name,
                mf.usage,
                mf.optype,
                mf.missing_replacement,
                "asIs",
                None,
                mf.outliers,
                mf.low,
                mf.high,
            )
            columns[mf.name] = treat_column(df, mf_as_is, col, miss, np.zeros(len(col), bool))
        return Scope(scope.n, parent=scope, columns=columns)

    def _apply_priors(self, result: Result) -> None:
        """Rows without a prediction take the Targets' prior probabilities, when declared."""
        if not self.targets.priors or result.probabilities is None:
            return
        missing = is_missing(result.value)
        if not missing.any():
            return
        for text, prior in self.targets.priors.items():
            key = self.label(text)
            if key in result.probabilities:
                result.probabilities[key] = np.where(missing, prior, result.probabilities[key])
        result.value = classify(result.probabilities, result.classes or [], self.target_type)

    def class_key(self, text: str, classes: list[Any]) -> Any:
        """The class in ``classes`` that a document's value text names (or the text itself)."""
        if classes:
            key = coerce(text, np.asarray(classes[:1], dtype=column_dtype(self.target_type)).dtype)
            for c in classes:
                if c == key:
                    return c
        return self.label(text)


def classify(probabilities: dict[Any, Array], classes: list[Any], data_type: str) -> Array:
    """The winning class per row (first class wins ties); missing where no probability."""
    if not classes:
        raise ModelError("a classification result has no classes")
    stacked = np.vstack([np.asarray(probabilities[c], dtype=np.float64) for c in classes])
    n = stacked.shape[1]
    dtype = column_dtype(data_type)
    labels = np.array(classes, dtype=dtype if dtype != np.float32 else np.float64)
    none = np.isnan(stacked).all(axis=0)
    filled = np.where(np.isnan(stacked), -np.inf, stacked)
    winners = labels[np.argmax(filled, axis=0)] if n else labels[:0]
    if dtype.kind == "O":
        out = winners.astype(object)
        out[none] = None
        return out
    return np.where(none, np.nan, winners.astype(np.float64))


def build_model(el: Element, ctx: Context) -> CompiledModel:
    """Compile a model element with the class registered for its tag."""
    target = _MODELS.get(el.tag)
    if target is None:
        raise unsupported(el)
    if el.get("isScorable") == "false":
        raise ModelError(f'{el.where}: <{el.tag}> is marked isScorable="false"')
    module_name, cls_name = target.split(":")
    module = importlib.import_module(f"conveyor.models.pmml.{module_name}")
    cls: type[CompiledModel] = getattr(module, cls_name)
    return cls(el, ctx)


def find_model(el: Element) -> Element | None:
    for child in el.children:
        if child.tag in MODEL_TAGS:
            return child
    return None
