"""ClusteringModel (center-based): distances from every row to every cluster centre at once.

The (rows x clusters) distance matrix is built field by field with the
ComparisonMeasure (euclidean, squaredEuclidean, cityBlock, chebychev,
minkowski) and each field's compareFunction (absDiff, gaussSim, delta,
equal) and weight. The predicted value is the winning cluster's id (its
``id``, else its 1-based position); the display value is its name; the
affinity of every cluster is its distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result
from conveyor.models.pmml.predicates import parse_array
from conveyor.models.pmml.scope import Scope

__all__ = ["ClusteringModel", "distance_matrix", "parse_measure"]

_DISTANCES = ("euclidean", "squaredEuclidean", "cityBlock", "chebychev", "minkowski")


class ClusteringModel(CompiledModel):
    """k-means style models: nearest centre wins."""

    functions = ("clustering",)

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        if el.get("modelClass", "centerBased") != "centerBased":
            raise unsupported(el, f"modelClass={el.get('modelClass')!r}")
        measure_el = el.find("ComparisonMeasure")
        if measure_el is None:
            raise ModelError(f"{el.where}: <ClusteringModel> needs a ComparisonMeasure")
        self.kind, self.metric, self.p, default_compare = parse_measure(measure_el)
        self.fields: list[tuple[str, str, float, float]] = []
        for cf in el.findall("ClusteringField"):
            if cf.get("isCenterField", "true") == "false":
                continue
            compare = cf.get("compareFunction", default_compare)
            if compare not in ("absDiff", "gaussSim", "delta", "equal"):
                raise unsupported(cf, f"compareFunction={compare!r}")
            self.fields.append(
                (
                    cf.require("field"),
                    compare,
                    float(cf.get("fieldWeight", "1")),
                    float(cf.get("similarityScale", "1")),
                )
            )
        clusters = el.findall("Cluster")
        if not clusters:
            raise ModelError(f"{el.where}: <ClusteringModel> has no clusters")
        self.ids = [c.get("id", str(i + 1)) for i, c in enumerate(clusters)]
        self.names = [c.get("name", self.ids[i]) for i, c in enumerate(clusters)]
        centres = []
        for c in clusters:
            array = c.find("Array")
            if array is None:
                raise ModelError(f"{c.where}: <Cluster> needs an Array of centre coordinates")
            centres.append([float(v) for v in parse_array(array)])
        self.centres = np.array(centres)
        if self.centres.shape[1] != len(self.fields):
            raise ModelError(
                f"{el.where}: clusters have {self.centres.shape[1]} coordinates "
                f"but the model has {len(self.fields)} clustering fields"
            )
        self.classes: list[Any] = list(self.ids)
        self.display = dict(zip(self.ids, self.names, strict=True))

    def distances(self, scope: Scope) -> Array:
        columns = [cast(scope.get(name), "double").astype(np.float64) for name, *_ in self.fields]
        return distance_matrix(
            columns, self.centres, [f[1:] for f in self.fields], self.metric, self.p, scope.n
        )

    def score(self, scope: Scope) -> Result:
        dist = self.distances(scope)
        n = scope.n
        none = np.isnan(dist).all(axis=1)
        filled = np.where(np.isnan(dist), np.inf if self.kind == "distance" else -np.inf, dist)
        best = np.argmin(filled, axis=1) if self.kind == "distance" else np.argmax(filled, axis=1)
        ids = np.array(self.ids, dtype=object)
        value = ids[best] if n else np.empty(0, dtype=object)
        value = value.astype(object)
        value[none] = None
        affinity = {cid: dist[:, j] for j, cid in enumerate(self.ids)}
        names = np.array(self.names, dtype=object)[best].astype(object) if n else value
        names[none] = None
        return Result(
            value=value,
            classes=self.classes,
            entity_id=value,
            affinity=affinity,
            extras={"display": names},
        )


def distance_matrix(
    columns: list[Array],
    points: Array,
    compares: list[tuple[str, float, float]],
    metric: str,
    p: float,
    n: int,
) -> Array:
    """(rows x points) distances, field by field; NaN for a row with a missing field.

    ``compares`` holds each field's (compareFunction, fieldWeight, similarityScale).
    """
    total = np.zeros((n, points.shape[0]))
    missing_any = np.zeros(n, dtype=bool)
    with np.errstate(all="ignore"):
        for j, (x, (compare, weight, scale)) in enumerate(zip(columns, compares, strict=True)):
            missing_any |= np.isnan(x)
            d = x[:, None] - points[None, :, j]
            if compare == "absDiff":
                c = np.abs(d)
            elif compare == "gaussSim":
                c = np.exp(-np.log(2.0) * d * d / (scale * scale))
            elif compare == "delta":
                c = (d != 0).astype(float)
            else:
                c = (d == 0).astype(float)
            if metric in ("euclidean", "squaredEuclidean"):
                total = total + weight * (c * c)
            elif metric == "cityBlock":
                total = total + weight * c
            elif metric == "chebychev":
                total = np.maximum(total, weight * c)
            else:
                total = total + weight * np.power(c, p)
        if metric == "euclidean":
            total = np.sqrt(total)
        elif metric == "minkowski":
            total = np.power(total, 1.0 / p)
    total[missing_any] = np.nan
    return total


def parse_measure(el: Element) -> tuple[str, str, float, str]:
    """A ComparisonMeasure -> (kind, metric, p-parameter, default compareFunction)."""
    kind = el.get("kind", "distance")
    metric = next((c for c in el.children if c.tag != "Extension"), None)
    if metric is None or metric.tag not in _DISTANCES:
        raise unsupported(metric or el, f"comparison measure {getattr(metric, 'tag', None)!r}")
    return (
        kind,
        metric.tag,
        float(metric.get("p-parameter", "2")),
        el.get("compareFunction", "absDiff"),
    )
