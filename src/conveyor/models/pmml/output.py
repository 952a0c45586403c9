"""The Output element: named result features computed from a model's raw Result.

Supported features: predictedValue, predictedDisplayValue, probability (by
value, or of the winning class), affinity/entityAffinity/clusterAffinity,
entityId/clusterId, transformedValue and decision (expressions that may read
earlier output fields), reasonCode and ruleValue (from model-specific extras).
Any other feature is refused at load time, naming the OutputField and line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast, column_dtype, format_number, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.expressions import EXPRESSION_TAGS, compile_expression
from conveyor.models.pmml.scope import Scope

if TYPE_CHECKING:
    from conveyor.models.pmml.core import CompiledModel, Result

__all__ = ["Output", "OutputField"]

_FEATURES = frozenset(
    {
        "predictedValue",
        "predictedDisplayValue",
        "probability",
        "affinity",
        "entityAffinity",
        "clusterAffinity",
        "entityId",
        "clusterId",
        "transformedValue",
        "decision",
        "reasonCode",
        "ruleValue",
        "confidence",
    }
)


@dataclass
class OutputField:
    """One OutputField: its name, type, feature and how to compute it."""

    name: str
    data_type: str | None
    optype: str | None
    feature: str
    final: bool
    value: str | None
    rank: int
    el: Element
    expression: Callable[[Scope], Array] | None = None


class Output:
    """All OutputFields of a model, computed in document order."""

    def __init__(self, el: Element | None, model: CompiledModel) -> None:
        self.model = model
        self.fields: list[OutputField] = []
        if el is None:
            return
        for f in el.findall("OutputField"):
            feature = f.get("feature", "predictedValue")
            if feature not in _FEATURES:
                raise unsupported(f, f"OutputField feature {feature!r}")
            body = [c for c in f.children if c.tag in EXPRESSION_TAGS]
            expr = compile_expression(body[0]) if body else None
            if feature in ("transformedValue", "decision") and expr is None:
                raise ModelError(f"{f.where}: OutputField {f.get('name')!r} needs an expression")
            self.fields.append(
                OutputField(
                    name=f.require("name"),
                    data_type=f.get("dataType"),
                    optype=f.get("optype"),
                    feature=feature,
                    final=f.get("isFinalResult", "true") != "false",
                    value=f.get("value"),
                    rank=int(f.get("rank", "1")),
                    el=f,
                    expression=expr,
                )
            )

    def compute(self, result: Result, scope: Scope) -> dict[str, Array]:
        outputs: dict[str, Array] = {}
        if not self.fields:
            return outputs
        inner = Scope(scope.n, parent=scope)
        for f in self.fields:
            col = self._one(f, result, inner)
            if f.data_type is not None:
                col = cast(col, f.data_type)
            outputs[f.name] = col
            inner.put(f.name, col)
        return outputs

    def _one(self, f: OutputField, result: Result, scope: Scope) -> Array:
        feature = f.feature
        model = self.model
        n = result.n
        if feature == "predictedValue":
            return result.value
        if feature == "predictedDisplayValue":
            return _display(result, model)
        if feature in ("probability", "confidence"):
            table = result.probabilities
            if feature == "confidence":
                table = result.extras.get("confidence", table)
            if table is None:
                raise ModelError(f"{f.el.where}: the model gives no {feature} for {f.name!r}")
            if f.value is None:
                return _of_winner(result.value, table, result.classes or list(table))
            key = model.class_key(f.value, result.classes or list(table))
            col = table.get(key)
            if col is None:
                return np.zeros(n) if result.classes else np.full(n, np.nan)
            return col
        neighbours = result.extras.get("neighbours")
        if neighbours is not None and feature in ("entityId", "affinity", "entityAffinity"):
            table = neighbours if feature == "entityId" else result.extras["distances"]
            if f.rank > len(table):
                return np.full(n, None if feature == "entityId" else np.nan, dtype=object)
            return np.asarray(table[f.rank - 1])
        if feature in ("affinity", "entityAffinity", "clusterAffinity"):
            if result.affinity is None:
                raise ModelError(f"{f.el.where}: the model gives no affinity for {f.name!r}")
            if f.value is None:
                ids = result.entity_id if result.entity_id is not None else result.value
                return _of_winner(ids, result.affinity, list(result.affinity))
            key = f.value
            col = result.affinity.get(key)
            return col if col is not None else np.full(n, np.nan)
        if feature in ("entityId", "clusterId"):
            if result.entity_id is None:
                raise ModelError(f"{f.el.where}: the model gives no entity id for {f.name!r}")
            return result.entity_id
        if feature in ("transformedValue", "decision"):
            assert f.expression is not None
            return f.expression(scope)
        if feature == "reasonCode":
            codes = result.extras.get("reasonCodes")
            if codes is None or f.rank > len(codes):
                return np.full(n, None, dtype=object)
            return np.asarray(codes[f.rank - 1])
        if feature == "ruleValue":
            rules = result.extras.get("ruleValue")
            if rules is None:
                raise ModelError(f"{f.el.where}: the model gives no rule values for {f.name!r}")
            return np.asarray(rules(f.el))
        raise unsupported(f.el, f"OutputField feature {feature!r}")

    @property
    def final_fields(self) -> list[OutputField]:
        return [f for f in self.fields if f.final]


def _of_winner(winner: Array, table: dict[Any, Array], keys: list[Any]) -> Array:
    n = len(winner)
    out = np.full(n, np.nan)
    for key in keys:
        col = table.get(key)
        if col is None:
            continue
        hit = np.asarray(winner == key, dtype=bool) & ~is_missing(winner)
        out[hit] = np.asarray(col, dtype=np.float64)[hit]
    return out


def _display(result: Result, model: CompiledModel) -> Array:
    if "display" in result.extras:
        return np.asarray(result.extras["display"])
    value = result.value
    shown: dict[Any, str] = {}
    df = model.target_field
    if df is not None:
        shown.update({k: v for k, v in df.display.items()})
    for text, disp in model.targets.display.items():
        shown[model.label(text)] = disp
    out = np.full(len(value), None, dtype=object)
    for i, v in enumerate(value.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        out[i] = shown.get(v, format_number(v) if isinstance(v, float) else str(v))
    return out


_ = column_dtype
