"""Scorecard: partial scores per characteristic, summed, with ranked reason codes.

Each Characteristic contributes the partialScore of its first Attribute whose
predicate holds (a row that matches none is rejected, naming the
characteristic). Reason codes are ranked per row by the points each
characteristic lost (pointsBelow: baseline - partial) or gained (pointsAbove),
summed per code; ties keep document order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result
from conveyor.models.pmml.errors import InvalidInputError
from conveyor.models.pmml.expressions import EXPRESSION_TAGS, compile_expression
from conveyor.models.pmml.predicates import Predicate, compile_predicate, find_predicate
from conveyor.models.pmml.scope import Scope

__all__ = ["Scorecard"]


class _Attribute:
    def __init__(self, el: Element, characteristic: Element) -> None:
        pred = find_predicate(el)
        if pred is None:
            raise ModelError(f"{el.where}: <Attribute> has no predicate")
        self.predicate: Predicate = compile_predicate(pred)
        self.reason = el.get("reasonCode", characteristic.get("reasonCode"))
        complex_el = el.find("ComplexPartialScore")
        self.expression: Callable[[Scope], Array] | None = None
        if complex_el is not None:
            body = [c for c in complex_el.children if c.tag in EXPRESSION_TAGS]
            if not body:
                raise ModelError(f"{complex_el.where}: ComplexPartialScore needs an expression")
            self.expression = compile_expression(body[0])
            self.points = np.nan
        else:
            if el.get("partialScore") is None:
                raise ModelError(f"{el.where}: <Attribute> needs a partialScore")
            self.points = float(el.require("partialScore"))


class Scorecard(CompiledModel):
    """Points-based scorecards with reason codes."""

    functions = ("regression",)

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.initial = float(el.get("initialScore", "0"))
        self.use_reasons = el.get("useReasonCodes", "true") != "false"
        self.algorithm = el.get("reasonCodeAlgorithm", "pointsBelow")
        if self.algorithm not in ("pointsBelow", "pointsAbove"):
            raise unsupported(el, f"reasonCodeAlgorithm={self.algorithm!r}")
        chars = el.find("Characteristics")
        if chars is None:
            raise ModelError(f"{el.where}: <Scorecard> needs Characteristics")
        default_baseline = el.get("baselineScore")
        self.characteristics: list[tuple[str, float, list[_Attribute]]] = []
        for c in chars.findall("Characteristic"):
            baseline = c.get("baselineScore", default_baseline)
            if self.use_reasons and baseline is None:
                raise ModelError(f"{c.where}: reason codes need a baselineScore")
            attrs = [_Attribute(a, c) for a in c.findall("Attribute")]
            self.characteristics.append((c.get("name", c.where), float(baseline or 0), attrs))
        codes: list[str] = []
        for _, _, attrs in self.characteristics:
            for a in attrs:
                if a.reason is not None and a.reason not in codes:
                    codes.append(a.reason)
        self.codes = codes

    def score(self, scope: Scope) -> Result:
        n = scope.n
        total = np.full(n, self.initial)
        points_by_code = np.zeros((n, len(self.codes)))
        for name, baseline, attrs in self.characteristics:
            pending = np.ones(n, dtype=bool)
            partial = np.full(n, np.nan)
            code_index = np.full(n, -1)
            for a in attrs:
                true, _ = a.predicate(scope, None)
                hit = pending & true
                if not hit.any():
                    continue
                if a.expression is not None:
                    value = cast(a.expression(scope), "double").astype(np.float64)
                    partial[hit] = value[hit]
                else:
                    partial[hit] = a.points
                if a.reason is not None:
                    code_index[hit] = self.codes.index(a.reason)
                pending &= ~hit
            if pending.any():
                row = int(np.flatnonzero(pending)[0])
                raise InvalidInputError(
                    f"row {row}: no attribute of scorecard characteristic {name!r} "
                    "matches the input"
                )
            total = total + partial
            diff = baseline - partial if self.algorithm == "pointsBelow" else partial - baseline
            for j in range(len(self.codes)):
                points_by_code[:, j] += np.where(code_index == j, diff, 0.0)
        result = Result(value=total)
        if self.use_reasons and self.codes:
            result.extras["reasonCodes"] = _ranked(points_by_code, self.codes)
        return result


def _ranked(points: Array, codes: list[str]) -> list[Array]:
    """Per rank, the reason code of that rank in each row (largest points first)."""
    order = np.argsort(-points, axis=1, kind="stable")
    names = np.array(codes, dtype=object)
    return [names[order[:, k]].astype(object) for k in range(len(codes))]
