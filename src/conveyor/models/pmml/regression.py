"""RegressionModel: linear predictors per RegressionTable, then a normalisation.

Regression uses the single table; classification has one table per target
category and normalises with softmax, simplemax, or (for two classes) an
inverse link on the first table's score (logit, probit, cloglog, loglog,
cauchit, exp, none) with the second class taking the remainder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._link import INVERSE_LINKS, simplemax, softmax
from conveyor.models.pmml._values import NO_MATCH, Array, cast, coerce
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.scope import Scope

__all__ = ["RegressionModel", "RegressionTable"]


class RegressionTable:
    """intercept + sum of numeric, categorical and interaction terms, over whole columns."""

    def __init__(self, el: Element, dtype: np.dtype[Any]) -> None:
        self.el = el
        self.dtype = dtype
        t = dtype.type
        self.intercept = t(float(el.get("intercept", "0")))
        self.numeric = [
            (p.require("name"), float(p.get("exponent", "1")), t(float(p.require("coefficient"))))
            for p in el.findall("NumericPredictor")
        ]
        self.categorical = [
            (p.require("name"), p.require("value"), t(float(p.require("coefficient"))))
            for p in el.findall("CategoricalPredictor")
        ]
        self.terms = [
            (
                [f.require("field") for f in p.findall("FieldRef")],
                t(float(p.require("coefficient"))),
            )
            for p in el.findall("PredictorTerm")
        ]
        self.target = el.get("targetCategory")

    def evaluate(self, scope: Scope) -> Array:
        dtype = self.dtype
        y = np.full(scope.n, self.intercept, dtype=dtype)
        with np.errstate(all="ignore"):
            for name, exponent, coef in self.numeric:
                x = _numeric(scope.get(name), dtype)
                y = y + coef * (x if exponent == 1 else x**exponent)
            for name, value, coef in self.categorical:
                x = scope.get(name)
                v = coerce(value, x.dtype)
                if x.dtype.kind == "O":
                    hit = np.array([a == v for a in x.tolist()], dtype=dtype)
                    missing = np.array([a is None for a in x.tolist()])
                else:
                    hit = (x == v).astype(dtype) if v is not NO_MATCH else np.zeros(len(x), dtype)
                    missing = np.isnan(x)
                y = y + np.where(missing, np.nan, coef * hit).astype(dtype)
            for names, coef in self.terms:
                prod = np.full(scope.n, coef, dtype=dtype)
                for name in names:
                    prod = prod * _numeric(scope.get(name), dtype)
                y = y + prod
        return y


def _numeric(col: Array, dtype: np.dtype[Any]) -> Array:
    if col.dtype.kind == "O":
        col = cast(col, "double")
    return col.astype(dtype, copy=False)


class RegressionModel(CompiledModel):
    """Linear and logistic regression."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.tables = [RegressionTable(t, self.dtype) for t in el.findall("RegressionTable")]
        if not self.tables:
            raise ModelError(f"{el.where}: <RegressionModel> has no RegressionTable")
        self.normalization = el.get("normalizationMethod", "none")
        if self.normalization not in INVERSE_LINKS and self.normalization not in (
            "softmax",
            "simplemax",
        ):
            raise unsupported(el, f"normalizationMethod={self.normalization!r}")
        if self.function == "classification":
            self.classes: list[Any] = []
            for t in self.tables:
                if t.target is None:
                    raise ModelError(f"{t.el.where}: a classification table needs targetCategory")
                self.classes.append(self.label(t.target))

    def score(self, scope: Scope) -> Result:
        if self.function == "regression":
            y = self.tables[0].evaluate(scope)
            if self.normalization in ("softmax", "logit"):
                y = INVERSE_LINKS["logit"](y)
            elif self.normalization != "none":
                with np.errstate(all="ignore"):
                    y = INVERSE_LINKS[self.normalization](y)
            return Result(value=y)
        scores = np.column_stack([t.evaluate(scope) for t in self.tables])
        probs = normalize(scores, self.normalization)
        probabilities = {c: probs[:, j] for j, c in enumerate(self.classes)}
        value = classify(probabilities, self.classes, self.target_type)
        return Result(value=value, classes=self.classes, probabilities=probabilities)


def normalize(scores: Array, method: str) -> Array:
    """Class scores (rows x classes) -> probabilities, as PMML's normalizationMethod says."""
    if method == "softmax":
        return softmax(scores)
    if method == "simplemax":
        return simplemax(scores)
    link = INVERSE_LINKS[method]
    with np.errstate(all="ignore"):
        if scores.shape[1] == 2:
            first = link(scores[:, 0])
            return np.column_stack([first, scores.dtype.type(1) - first])
        return np.asarray(link(scores), dtype=scores.dtype)
