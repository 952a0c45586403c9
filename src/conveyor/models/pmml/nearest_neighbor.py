"""NearestNeighborModel: k nearest training instances, found for a whole batch at once.

The (rows x instances) distance matrix uses the ComparisonMeasure and each
KNNInput's compareFunction and weight; ``argpartition``/``argsort`` pick the k
nearest per row (ties keep training order). Regression targets combine by
average, median or weightedAverage; categorical ones by majorityVote or
weightedMajorityVote (weights 1 / (distance + threshold)). Output entityId
and affinity with a rank give the rank-th neighbour's id and distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.clustering import distance_matrix, parse_measure
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.scope import Scope

__all__ = ["NearestNeighborModel"]


class NearestNeighborModel(CompiledModel):
    """k-nearest-neighbour regression and classification."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.k = int(el.require("numberOfNeighbors"))
        self.continuous_method = el.get("continuousScoringMethod", "average")
        self.categorical_method = el.get("categoricalScoringMethod", "majorityVote")
        if self.continuous_method not in ("average", "median", "weightedAverage"):
            raise unsupported(el, f"continuousScoringMethod={self.continuous_method!r}")
        if self.categorical_method not in ("majorityVote", "weightedMajorityVote"):
            raise unsupported(el, f"categoricalScoringMethod={self.categorical_method!r}")
        self.threshold = float(el.get("threshold", "0.001"))
        measure = el.find("ComparisonMeasure")
        if measure is None:
            raise ModelError(f"{el.where}: <NearestNeighborModel> needs a ComparisonMeasure")
        self.kind, self.metric, self.p, default_compare = parse_measure(measure)
        inputs = el.find("KNNInputs")
        if inputs is None:
            raise ModelError(f"{el.where}: <NearestNeighborModel> needs KNNInputs")
        self.inputs: list[tuple[str, str, float, float]] = []
        for ki in inputs.findall("KNNInput"):
            compare = ki.get("compareFunction", default_compare)
            if compare not in ("absDiff", "gaussSim", "delta", "equal"):
                raise unsupported(ki, f"compareFunction={compare!r}")
            self.inputs.append(
                (ki.require("field"), compare, float(ki.get("fieldWeight", "1")), 1.0)
            )
        self._training(el)

    def _training(self, el: Element) -> None:
        ti = el.find("TrainingInstances")
        if ti is None:
            raise ModelError(f"{el.where}: <NearestNeighborModel> needs TrainingInstances")
        fields = ti.find("InstanceFields")
        table = ti.find("InlineTable")
        if fields is None or table is None:
            raise unsupported(ti, "TrainingInstances without InstanceFields and an InlineTable")
        # cells are read without their namespace prefix (data:x -> x), as the parser does
        column_of = {
            f.require("field"): f.get("column", f.require("field")).rsplit(":", 1)[-1]
            for f in fields.findall("InstanceField")
        }
        rows = [{c.tag: c.text.strip() for c in row.children} for row in table.findall("row")]
        if not rows:
            raise ModelError(f"{ti.where}: TrainingInstances has no rows")
        points = []
        for name, *_ in self.inputs:
            col = column_of.get(name)
            if col is None:
                raise ModelError(f"{ti.where}: KNNInput {name!r} has no InstanceField")
            points.append([float(r.get(col, "nan")) for r in rows])
        self.points = np.array(points).T.reshape(len(rows), len(self.inputs))
        id_var = self.el.get("instanceIdVariable")
        if id_var is not None:
            id_col = column_of.get(id_var, id_var)
            self.ids = np.array([r.get(id_col) for r in rows], dtype=object)
        else:
            self.ids = np.array([str(i + 1) for i in range(len(rows))], dtype=object)
        if self.target_name is None:
            raise ModelError(f"{self.el.where}: <NearestNeighborModel> needs a target field")
        target_col = column_of.get(self.target_name, self.target_name)
        texts = [r.get(target_col) for r in rows]
        if self.function == "regression":
            self.targets_values = np.array([float(t) if t else np.nan for t in texts])
        else:
            labels = [self.label(t) if t is not None else None for t in texts]
            self.classes: list[Any] = self.declared_classes() or list(
                dict.fromkeys(v for v in labels if v is not None)
            )
            self.target_labels = labels

    def score(self, scope: Scope) -> Result:
        columns = [cast(scope.get(name), "double").astype(np.float64) for name, *_ in self.inputs]
        dist = distance_matrix(
            columns, self.points, [i[1:] for i in self.inputs], self.metric, self.p, scope.n
        )
        missing: Array = np.asarray(np.isnan(dist).any(axis=1))
        key = dist if self.kind == "distance" else -dist
        key = np.where(np.isnan(key), np.inf, key)
        k = min(self.k, self.points.shape[0])
        order = np.argsort(key, axis=1, kind="stable")[:, :k]
        near = np.take_along_axis(dist, order, axis=1)
        weights = 1.0 / (near + self.threshold)
        result = self._combine(order, weights, missing)
        ranks = [self.ids[order[:, r]].astype(object) for r in range(k)]
        for r in ranks:
            r[missing] = None
        result.entity_id = ranks[0]
        result.extras["neighbours"] = ranks
        result.extras["distances"] = [np.where(missing, np.nan, near[:, r]) for r in range(k)]
        return result

    def _combine(self, order: Array, weights: Array, missing: Array) -> Result:
        if self.function == "regression":
            y = self.targets_values[order]
            if self.continuous_method == "average":
                value = y.mean(axis=1)
            elif self.continuous_method == "median":
                value = np.median(y, axis=1)
            else:
                value = (y * weights).sum(axis=1) / weights.sum(axis=1)
            return Result(value=np.where(missing, np.nan, value))
        weighted = self.categorical_method == "weightedMajorityVote"
        labels = np.array(self.target_labels, dtype=object)[order]
        totals = {c: np.zeros(len(order)) for c in self.classes}
        for c in self.classes:
            hit = labels == c
            totals[c] = (np.where(hit, weights, 0.0) if weighted else hit.astype(float)).sum(axis=1)
        total = sum(totals.values())
        with np.errstate(all="ignore"):
            probs = {c: np.where(missing, np.nan, t / total) for c, t in totals.items()}
        value = classify(probs, self.classes, self.target_type)
        return Result(value=value, classes=self.classes, probabilities=probs)
