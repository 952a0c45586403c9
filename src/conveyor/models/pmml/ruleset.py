"""RuleSetModel: rules' predicates evaluated as masks; firstHit, weightedSum or weightedMax.

CompoundRules are flattened into SimpleRules whose predicate is the
conjunction of the path, in document order, so firstHit keeps its meaning.
Rows no rule fires for get the RuleSet's defaultScore (or no prediction).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.predicates import Predicate, compile_predicate, find_predicate
from conveyor.models.pmml.scope import Scope

__all__ = ["RuleSetModel"]


class _Rule:
    def __init__(self, el: Element, path: list[Predicate], index: int) -> None:
        self.id = el.get("id", str(index + 1))
        self.score = el.require("score")
        self.weight = float(el.get("weight", "1"))
        self.confidence = float(el.get("confidence", "1"))
        self.path = path
        self.distribution = {
            sd.require("value"): float(sd.get("recordCount", "0"))
            for sd in el.findall("ScoreDistribution")
        }

    def fires(self, scope: Scope) -> npt.NDArray[np.bool_]:
        hit = np.ones(scope.n, dtype=bool)
        for predicate in self.path:
            true, _ = predicate(scope, None)
            hit &= true
        return hit


class RuleSetModel(CompiledModel):
    """Rule sets for classification."""

    functions = ("classification",)

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        rs = el.find("RuleSet")
        if rs is None:
            raise ModelError(f"{el.where}: <RuleSetModel> needs a RuleSet")
        methods = rs.findall("RuleSelectionMethod")
        if not methods:
            raise ModelError(f"{rs.where}: <RuleSet> needs a RuleSelectionMethod")
        self.criterion = methods[0].require("criterion")
        if self.criterion not in ("firstHit", "weightedSum", "weightedMax"):
            raise unsupported(methods[0], f"criterion={self.criterion!r}")
        self.default_score = rs.get("defaultScore")
        self.default_confidence = float(rs.get("defaultConfidence", "0"))
        self.rules: list[_Rule] = []
        self._flatten(rs, [])
        classes = self.declared_classes() or []
        for r in self.rules:
            label = self.label(r.score)
            if label not in classes:
                classes.append(label)
        self.classes: list[Any] = classes

    def _flatten(self, parent: Element, path: list[Predicate]) -> None:
        for child in parent.children:
            if child.tag not in ("SimpleRule", "CompoundRule"):
                continue
            pred_el = find_predicate(child)
            if pred_el is None:
                raise ModelError(f"{child.where}: <{child.tag}> has no predicate")
            here = [*path, compile_predicate(pred_el)]
            if child.tag == "SimpleRule":
                self.rules.append(_Rule(child, here, len(self.rules)))
            else:
                self._flatten(child, here)

    def score(self, scope: Scope) -> Result:
        n = scope.n
        classes = self.classes
        probs = {c: np.zeros(n) for c in classes}
        entity = np.full(n, None, dtype=object)
        if self.criterion == "firstHit":
            pending = np.ones(n, dtype=bool)
            for rule in self.rules:
                if not pending.any():
                    break
                hit = pending & rule.fires(scope)
                if not hit.any():
                    continue
                self._credit(probs, rule, hit)
                entity[hit] = rule.id
                pending &= ~hit
            fired = ~pending
        else:
            totals = {c: np.zeros(n) for c in classes}
            fired = np.zeros(n, dtype=bool)
            for rule in self.rules:
                hit = rule.fires(scope)
                label = self.label(rule.score)
                if self.criterion == "weightedSum":
                    totals[label] += np.where(hit, rule.weight, 0.0)
                else:
                    totals[label] = np.where(
                        hit, np.maximum(totals[label], rule.weight), totals[label]
                    )
                fired |= hit
            count = sum(totals.values())
            with np.errstate(all="ignore"):
                probs = {c: np.where(fired, t / count, 0.0) for c, t in totals.items()}
        if self.default_score is not None:
            label = self.label(self.default_score)
            probs[label] = np.where(fired, probs[label], 1.0)
            fired = np.ones(n, dtype=bool)
        probabilities = {c: np.where(fired, p, np.nan) for c, p in probs.items()}
        value = classify(probabilities, classes, self.target_type)
        return Result(value=value, classes=classes, probabilities=probabilities, entity_id=entity)

    def _credit(self, probs: dict[Any, Any], rule: _Rule, hit: npt.NDArray[np.bool_]) -> None:
        if rule.distribution:
            total = sum(rule.distribution.values()) or 1.0
            for text, count in rule.distribution.items():
                label = self.label(text)
                if label in probs:
                    probs[label][hit] = count / total
        else:
            probs[self.label(rule.score)][hit] = 1.0
