"""NaiveBayesModel: class priors times per-input likelihoods, for a whole batch per input.

Categorical inputs look their value up in PairCounts (count / class total,
floored at the model's threshold); continuous inputs use a Gaussian or
Poisson distribution per class. Missing or unseen values leave an input out,
as the specification says.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.expressions import EXPRESSION_TAGS, compile_expression
from conveyor.models.pmml.scope import Scope

__all__ = ["NaiveBayesModel"]


def _counts(el: Element | None) -> dict[str, float]:
    if el is None:
        return {}
    return {c.require("value"): float(c.require("count")) for c in el.findall("TargetValueCount")}


class _Input:
    def __init__(self, el: Element, model: NaiveBayesModel) -> None:
        self.field = el.require("fieldName")
        df = el.find("DerivedField")
        body = [c for c in df.children if c.tag in EXPRESSION_TAGS] if df is not None else []
        self.expression = compile_expression(body[0]) if body else None
        self.gaussian: dict[Any, tuple[float, float]] = {}
        self.poisson: dict[Any, float] = {}
        stats = el.find("TargetValueStats")
        if stats is not None:
            for stat in stats.findall("TargetValueStat"):
                label = model.label(stat.require("value"))
                dist = next((c for c in stat.children if c.tag != "Extension"), None)
                if dist is None:
                    raise ModelError(f"{stat.where}: TargetValueStat needs a distribution")
                if dist.tag == "GaussianDistribution":
                    self.gaussian[label] = (
                        float(dist.require("mean")),
                        float(dist.require("variance")),
                    )
                elif dist.tag == "PoissonDistribution":
                    self.poisson[label] = float(dist.require("mean"))
                else:
                    raise unsupported(dist)
        # value text -> class -> count
        self.pairs: dict[str, dict[Any, float]] = {}
        for pc in el.findall("PairCounts"):
            self.pairs[pc.require("value")] = {
                model.label(k): v for k, v in _counts(pc.find("TargetValueCounts")).items()
            }
        self._key: tuple[Any, ...] | None = None
        self._cached: Array = np.ones((1, 0))
        self._position: dict[str, int] = {}
        self.totals: dict[Any, float] = {}
        for counts in self.pairs.values():
            for c, v in counts.items():
                self.totals[c] = self.totals.get(c, 0.0) + v

    def likelihoods(self, scope: Scope, classes: list[Any], threshold: float) -> Array | None:
        """(rows x classes) factors; 1 where the input is left out."""
        col = self.expression(scope) if self.expression is not None else scope.get(self.field)
        n = scope.n
        out = np.ones((n, len(classes)))
        if self.gaussian or self.poisson:
            x = cast(col, "double").astype(np.float64)
            present = ~np.isnan(x)
            with np.errstate(all="ignore"):
                for j, c in enumerate(classes):
                    if c in self.gaussian:
                        mean, var = self.gaussian[c]
                        p = np.exp(-((x - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
                    elif c in self.poisson:
                        lam = self.poisson[c]
                        k = np.floor(x)
                        lgamma = np.frompyfunc(math.lgamma, 1, 1)
                        p = np.exp(k * math.log(lam) - lam - lgamma(k + 1).astype(float))
                    else:
                        continue
                    out[:, j] = np.where(present, np.maximum(p, threshold), 1.0)
            return out
        text = cast(col, "string")
        table = self._table(classes, threshold)
        position = self._position
        codes = np.fromiter((position.get(v, -1) for v in text.tolist()), dtype=np.intp, count=n)
        return table[codes]

    def _table(self, classes: list[Any], threshold: float) -> Array:
        """(values + 1) x classes factors; the last row (unseen or missing values) is ones."""
        key = (tuple(classes), threshold)
        if self._key != key:
            table = np.ones((len(self.pairs) + 1, len(classes)))
            for i, counts in enumerate(self.pairs.values()):
                for j, c in enumerate(classes):
                    total = self.totals.get(c, 0.0)
                    p = counts.get(c, 0.0) / total if total else 0.0
                    table[i, j] = p if p > 0 else threshold
            self._cached = table
            self._key = key
            self._position = {v: i for i, v in enumerate(self.pairs)}
        return self._cached


class NaiveBayesModel(CompiledModel):
    """Naive Bayes classifiers."""

    functions = ("classification",)

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.threshold = float(el.require("threshold"))
        out = el.find("BayesOutput")
        if out is None:
            raise ModelError(f"{el.where}: <NaiveBayesModel> needs a BayesOutput")
        priors = _counts(out.find("TargetValueCounts"))
        self.classes: list[Any] = [self.label(k) for k in priors]
        self.priors = np.array(list(priors.values()))
        inputs = el.find("BayesInputs")
        self.inputs = [_Input(b, self) for b in inputs.findall("BayesInput")] if inputs else []

    def score(self, scope: Scope) -> Result:
        like = np.tile(self.priors, (scope.n, 1))
        for inp in self.inputs:
            factors = inp.likelihoods(scope, self.classes, self.threshold)
            if factors is not None:
                like = like * factors
        with np.errstate(all="ignore"):
            probs = like / like.sum(axis=1, keepdims=True)
        probabilities = {c: probs[:, j] for j, c in enumerate(self.classes)}
        value = classify(probabilities, self.classes, self.target_type)
        return Result(value=value, classes=self.classes, probabilities=probabilities)
