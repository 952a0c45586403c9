"""AssociationModel: baskets against rules, as boolean matrices.

A batch is either one row per (group, item) pair — grouped by the
MiningSchema's ``group`` field, in first-seen order, one result per group —
or one row per basket whose item column holds a list of items. Every rule's
antecedent and consequent are item masks, so matching all baskets against
all rules is two matrix products. OutputFields of feature ``ruleValue``
select the rank-th matching rule (recommendation, exclusiveRecommendation or
ruleAssociation; ranked by confidence, support, lift, leverage or affinity).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result
from conveyor.models.pmml.errors import InvalidInputError
from conveyor.models.pmml.scope import Scope

__all__ = ["AssociationModel"]

_MEASURES = ("support", "confidence", "lift", "leverage", "affinity")


class AssociationModel(CompiledModel):
    """Association rules scored against shopping baskets."""

    functions = ("associationRules",)

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.group = next((m.name for m in self.mining if m.usage == "group"), None)
        active = [m.name for m in self.mining if m.usage == "active"]
        if len(active) != 1:
            raise unsupported(el, "an AssociationModel without exactly one active item field")
        self.item_field = active[0]
        items = el.findall("Item")
        self.item_ids = {i.require("id"): k for k, i in enumerate(items)}
        self.item_values = [i.require("value") for i in items]
        self.item_index = {v: k for k, v in enumerate(self.item_values)}
        itemsets: dict[str, Array] = {}
        for s in el.findall("Itemset"):
            mask = np.zeros(len(items), dtype=bool)
            for ref in s.findall("ItemRef"):
                key = ref.require("itemRef")
                if key not in self.item_ids:
                    raise ModelError(f"{ref.where}: unknown item {key!r}")
                mask[self.item_ids[key]] = True
            itemsets[s.require("id")] = mask
        rules = el.findall("AssociationRule")
        for r in rules:
            for side in ("antecedent", "consequent"):
                if r.require(side) not in itemsets:
                    raise ModelError(f"{r.where}: unknown {side} itemset {r.get(side)!r}")
        self.rule_ids = np.array(
            [r.get("id", str(k + 1)) for k, r in enumerate(rules)], dtype=object
        )
        self.antecedent = np.array([itemsets[r.require("antecedent")] for r in rules]).reshape(
            len(rules), len(items)
        )
        self.consequent = np.array([itemsets[r.require("consequent")] for r in rules]).reshape(
            len(rules), len(items)
        )
        self.antecedent_sets = [r.require("antecedent") for r in rules]
        self.consequent_sets = [r.require("consequent") for r in rules]
        self.measures = {m: np.array([float(r.get(m, "nan")) for r in rules]) for m in _MEASURES}

    def baskets(self, columns: Mapping[str, Any], n: int) -> Array:
        """(baskets x items) membership from pairs grouped by the group field, or item lists."""
        raw = columns.get(self.item_field)
        if raw is None:
            raise InvalidInputError(
                f"input field {self.item_field!r} (the items) is missing from the batch"
            )
        values = list(raw)
        if self.group is not None and self.group in columns:
            groups = list(columns[self.group])
            order: dict[Any, int] = {}
            for g in groups:
                order.setdefault(g, len(order))
            out = np.zeros((len(order), len(self.item_values)), dtype=bool)
            for g, v in zip(groups, values, strict=True):
                k = self.item_index.get(str(v)) if v is not None else None
                if k is not None:
                    out[order[g], k] = True
            return out
        out = np.zeros((n, len(self.item_values)), dtype=bool)
        for i, basket in enumerate(values):
            members = [basket] if isinstance(basket, str) else list(basket or [])
            for v in members:
                k = self.item_index.get(str(v))
                if k is not None:
                    out[i, k] = True
        return out

    def score_baskets(self, basket: Array) -> Result:
        b = basket.astype(np.int64)
        has_ante = b @ self.antecedent.T.astype(np.int64) == self.antecedent.sum(axis=1)
        has_cons = b @ self.consequent.T.astype(np.int64) == self.consequent.sum(axis=1)
        n = basket.shape[0]
        result = Result(value=np.full(n, None, dtype=object))
        result.extras["ruleValue"] = lambda el: self._rule_value(el, has_ante, has_cons)
        return result

    def score(self, scope: Scope) -> Result:
        raise ModelError("an AssociationModel scores baskets; use predict() on the document")

    def _rule_value(self, el: Element, has_ante: Array, has_cons: Array) -> Array:
        algorithm = el.get("algorithm", "exclusiveRecommendation")
        if algorithm == "recommendation":
            match = has_ante
        elif algorithm == "exclusiveRecommendation":
            match = has_ante & ~has_cons
        elif algorithm == "ruleAssociation":
            match = has_ante & has_cons
        else:
            raise unsupported(el, f"algorithm={algorithm!r}")
        basis = el.get("rankBasis", "confidence")
        if basis not in self.measures:
            raise unsupported(el, f"rankBasis={basis!r}")
        descending = el.get("rankOrder", "descending") == "descending"
        rank = int(el.get("rank", "1"))
        key = self.measures[basis]
        order = np.argsort(-key if descending else key, kind="stable")
        ordered = match[:, order]
        counts = np.cumsum(ordered, axis=1)
        hit = ordered & (counts == rank)
        found = hit.any(axis=1)
        chosen = order[np.argmax(hit, axis=1)] if len(order) else np.zeros(len(match), np.intp)
        feature = el.get("ruleFeature", "consequent")
        if feature in _MEASURES:
            return np.where(found, self.measures[feature][chosen], np.nan)
        if feature == "ruleId":
            out: Array = self.rule_ids[chosen].astype(object)
        elif feature in ("antecedent", "consequent"):
            sets = self.antecedent_sets if feature == "antecedent" else self.consequent_sets
            out = np.array([sets[i] for i in chosen], dtype=object)
        elif feature == "rule":
            out = np.array(
                [f"{self.antecedent_sets[i]}->{self.consequent_sets[i]}" for i in chosen],
                dtype=object,
            )
        else:
            raise unsupported(el, f"ruleFeature={feature!r}")
        out[~found] = None
        return out
