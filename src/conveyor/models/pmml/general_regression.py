"""GeneralRegressionModel: a design matrix from PPMatrix, betas from ParamMatrix, then a link.

Supported model types: regression, generalLinear, generalizedLinear (links
identity, log, logit, probit, cloglog, loglog, cauchit, power), multinomialLogistic,
ordinalMultinomial (cumulative links) and CoxRegression (baseline cumulative
hazard per stratum). The design matrix is built once per batch as a
(rows x parameters) array; each class's linear predictor is one matrix product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._link import INVERSE_LINKS, softmax
from conveyor.models.pmml._values import NO_MATCH, Array, cast, coerce, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.scope import Scope

__all__ = ["GeneralRegressionModel"]

_TYPES = (
    "regression",
    "generalLinear",
    "generalizedLinear",
    "multinomialLogistic",
    "ordinalMultinomial",
    "CoxRegression",
)


class GeneralRegressionModel(CompiledModel):
    """GLMs, multinomial/ordinal logistic regression and Cox regression."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.model_type = el.require("modelType")
        if self.model_type not in _TYPES:
            raise unsupported(el, f"modelType={self.model_type!r}")
        plist = el.find("ParameterList")
        params = plist.findall("Parameter") if plist is not None else []
        self.params = [p.require("name") for p in params]
        self.reference = np.array([float(p.get("referencePoint", "0")) for p in params])
        index = {name: i for i, name in enumerate(self.params)}
        factors = el.find("FactorList")
        self.factors = (
            {p.require("name") for p in factors.findall("Predictor")} if factors else set()
        )
        # per parameter: list of (predictor, kind, value) terms multiplied together
        self.cells: list[list[tuple[str, str, str]]] = [[] for _ in self.params]
        pp = el.find("PPMatrix")
        for cell in pp.findall("PPCell") if pp is not None else []:
            name = cell.require("parameterName")
            if name not in index:
                raise ModelError(f"{cell.where}: PPCell names unknown parameter {name!r}")
            predictor = cell.require("predictorName")
            kind = "factor" if predictor in self.factors else "covariate"
            self.cells[index[name]].append((predictor, kind, cell.require("value")))
        # betas: target category (or None) -> vector over parameters
        self.betas: dict[str | None, Array] = {}
        pm = el.find("ParamMatrix")
        for cell in pm.findall("PCell") if pm is not None else []:
            name = cell.require("parameterName")
            if name not in index:
                raise ModelError(f"{cell.where}: PCell names unknown parameter {name!r}")
            key = cell.get("targetCategory")
            vec = self.betas.setdefault(key, np.zeros(len(self.params)))
            vec[index[name]] = float(cell.require("beta"))
        self.link = el.get("linkFunction", "identity")
        self.link_parameter = float(el.get("linkParameter", "1"))
        self.cumulative_link = el.get("cumulativeLink", "logit")
        self.offset_variable = el.get("offsetVariable")
        self.offset_value = float(el.get("offsetValue", "0"))
        self.trials_variable = el.get("trialsVariable")
        self.trials_value = el.get("trialsValue")
        if self.function == "classification":
            self.classes: list[Any] = self.declared_classes() or [
                self.label(k) for k in self.betas if k is not None
            ]
            ref = el.get("targetReferenceCategory")
            self.reference_class = self.label(ref) if ref is not None else None
        if self.model_type == "CoxRegression":
            self._compile_cox(el)

    def _compile_cox(self, el: Element) -> None:
        self.end_time = el.require("endTimeVariable")
        self.strata_variable = el.get("baselineStrataVariable")
        tables = el.find("BaseCumHazardTables")
        if tables is None:
            raise ModelError(f"{el.where}: a CoxRegression model needs BaseCumHazardTables")
        self.strata: dict[str | None, tuple[float, Array, Array]] = {}

        def table(parent: Element, max_time: float) -> tuple[float, Array, Array]:
            cells = parent.findall("BaselineCell")
            times = np.array([float(c.require("time")) for c in cells])
            hazards = np.array([float(c.require("cumHazard")) for c in cells])
            order = np.argsort(times, kind="stable")
            return max_time, times[order], hazards[order]

        for stratum in tables.findall("BaselineStratum"):
            self.strata[stratum.require("value")] = table(
                stratum, float(stratum.require("maxTime"))
            )
        if tables.findall("BaselineCell"):
            self.strata[None] = table(tables, float(tables.get("maxTime", "inf")))

    # -- evaluation -------------------------------------------------------------------

    def design(self, scope: Scope) -> Array:
        """The (rows x parameters) design matrix; NaN where an input is missing."""
        x = np.ones((scope.n, len(self.params)))
        for j, terms in enumerate(self.cells):
            for predictor, kind, value in terms:
                col = scope.get(predictor)
                if kind == "factor":
                    v = coerce(value, col.dtype)
                    if col.dtype.kind == "O":
                        hit = np.array([a == v for a in col.tolist()], dtype=float)
                    else:
                        hit = (col == v).astype(float) if v is not NO_MATCH else np.zeros(scope.n)
                    x[:, j] *= np.where(is_missing(col), np.nan, hit)
                else:
                    num = cast(col, "double").astype(np.float64)
                    exponent = float(value)
                    with np.errstate(all="ignore"):
                        x[:, j] *= num if exponent == 1 else num**exponent
        return x

    def _offset(self, scope: Scope) -> Array:
        offset = np.full(scope.n, self.offset_value)
        if self.offset_variable is not None:
            offset = offset + cast(scope.get(self.offset_variable), "double").astype(np.float64)
        return offset

    def _eta(self, x: Array, key: str | None, scope: Scope) -> Array:
        beta = self.betas.get(key)
        if beta is None:
            return np.zeros(scope.n)
        with np.errstate(invalid="ignore"):
            return np.asarray(x @ beta) + self._offset(scope)

    def _inverse_link(self, eta: Array, scope: Scope) -> Array:
        link = self.link
        with np.errstate(all="ignore"):
            if link == "power":
                p = self.link_parameter
                mu = np.exp(eta) if p == 0 else np.power(eta, 1.0 / p)
            elif link == "oddspower":
                p = self.link_parameter
                mu = (
                    1.0 / (1.0 + np.exp(-eta))
                    if p == 0
                    else np.power(1 + p * eta, 1 / p) / (1 + np.power(1 + p * eta, 1 / p))
                )
            elif link in INVERSE_LINKS:
                mu = INVERSE_LINKS[link](eta)
            else:
                raise unsupported(self.el, f"linkFunction={link!r}")
        if self.trials_variable is not None or self.trials_value is not None:
            trials = (
                cast(scope.get(self.trials_variable), "double").astype(np.float64)
                if self.trials_variable is not None
                else float(self.trials_value or 1)
            )
            mu = mu * trials
        return np.asarray(mu, dtype=np.float64)

    def score(self, scope: Scope) -> Result:
        x = self.design(scope)
        if self.model_type == "CoxRegression":
            return Result(value=self._cox(x, scope))
        if self.function == "regression":
            eta = self._eta(x, None if None in self.betas else next(iter(self.betas)), scope)
            if self.model_type in ("regression", "generalLinear"):
                return Result(value=eta)
            return Result(value=self._inverse_link(eta, scope))
        if self.model_type == "multinomialLogistic":
            probs = self._multinomial(x, scope)
        elif self.model_type == "ordinalMultinomial":
            probs = self._ordinal(x, scope)
        else:
            probs = self._binary(x, scope)
        probabilities = {c: probs[:, j] for j, c in enumerate(self.classes)}
        value = classify(probabilities, self.classes, self.target_type)
        return Result(value=value, classes=self.classes, probabilities=probabilities)

    def _category_key(self, cls: Any) -> str | None:
        for key in self.betas:
            if key is not None and self.label(key) == cls:
                return key
        return None

    def _multinomial(self, x: Array, scope: Scope) -> Array:
        etas = np.column_stack([self._eta(x, self._category_key(c), scope) for c in self.classes])
        return softmax(etas)

    def _binary(self, x: Array, scope: Scope) -> Array:
        if len(self.classes) != 2:
            raise unsupported(
                self.el, f"a {self.model_type} classifier with {len(self.classes)} classes"
            )
        keyed = [c for c in self.classes if self._category_key(c) is not None]
        if len(keyed) != 1:
            raise ModelError(f"{self.el.where}: expected betas for exactly one target category")
        event = keyed[0]
        p = self._inverse_link(self._eta(x, self._category_key(event), scope), scope)
        cols = [p if c == event else 1.0 - p for c in self.classes]
        return np.column_stack(cols)

    def _ordinal(self, x: Array, scope: Scope) -> Array:
        # one intercept per category (the PCells of the "intercept" parameter differ by
        # category), shared slopes; P(Y <= k) = link^-1(eta_k)
        link = INVERSE_LINKS.get(self.cumulative_link)
        if link is None:
            raise unsupported(self.el, f"cumulativeLink={self.cumulative_link!r}")
        cumulative = []
        for c in self.classes[:-1]:
            key = self._category_key(c)
            with np.errstate(all="ignore"):
                cumulative.append(link(self._eta(x, key, scope)))
        cum = np.column_stack([*cumulative, np.ones(scope.n)])
        return np.diff(np.column_stack([np.zeros(scope.n), cum]), axis=1)

    def _cox(self, x: Array, scope: Scope) -> Array:
        beta = self.betas.get(None)
        if beta is None:
            raise ModelError(f"{self.el.where}: a CoxRegression model needs betas")
        with np.errstate(all="ignore"):
            risk = np.exp((x - self.reference) @ beta)
        time = cast(scope.get(self.end_time), "double").astype(np.float64)
        out = np.full(scope.n, np.nan)
        if self.strata_variable is not None:
            strata = cast(scope.get(self.strata_variable), "string")
        else:
            strata = np.full(scope.n, None, dtype=object)
        for key, (max_time, times, hazards) in self.strata.items():
            rows = np.array([s == key for s in strata.tolist()], dtype=bool) & ~np.isnan(time)
            if not rows.any():
                continue
            t = time[rows]
            idx = np.searchsorted(times, t, side="right") - 1
            base = np.where(idx >= 0, hazards[np.clip(idx, 0, None)], 0.0)
            base = np.where(t > max_time, np.nan, base)
            out[rows] = base * risk[rows]
        return out
