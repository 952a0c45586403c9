"""Tree scoring that splits a row across branches: weightedConfidence and aggregateNodes.

When a predicate is UNKNOWN the row continues down every child whose
predicate is not false (from that child on), and the reached leaves are
combined: weightedConfidence weights each leaf's probabilities by the share
of training records (child recordCount / sum over the children taken);
aggregateNodes adds the leaves' ScoreDistribution record counts. Rows stay
batched: each node sees the rows (and their weights) that reached it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from conveyor.models.pmml._values import Array
from conveyor.models.pmml.core import Result, classify
from conveyor.models.pmml.scope import Scope

if TYPE_CHECKING:
    from conveyor.models.pmml.tree import TreeModel, _Node

__all__ = ["split_score"]

Rows = npt.NDArray[np.intp]


def _record_count(node: _Node) -> float:
    text = node.el.get("recordCount")
    if text is not None:
        return float(text)
    return float(
        sum(float(sd.get("recordCount", "0")) for sd in node.el.findall("ScoreDistribution"))
    )


def split_score(model: TreeModel, scope: Scope) -> Result:
    """Classification result of a batch under weightedConfidence or aggregateNodes."""
    n = scope.n
    classes = model.classes
    aggregate = model.missing_strategy == "aggregateNodes"
    vectors = np.nan_to_num(model.counts if aggregate else model.probs)
    acc = np.zeros((n, len(classes)))
    reached = np.zeros(n, dtype=bool)

    def leaf(node: _Node, rows: Rows, weights: Array) -> None:
        np.add.at(acc, rows, weights[:, None] * vectors[node.index])
        reached[rows] = True

    def descend(node: _Node, rows: Rows, weights: Array) -> None:
        if len(rows) == 0:
            return
        if not node.children:
            leaf(node, rows, weights)
            return
        remaining, w = rows, weights
        for k, child in enumerate(node.children):
            if len(remaining) == 0:
                return
            true, unknown = child.predicate(scope, remaining)
            descend(child, remaining[true], w[true])
            if unknown.any():
                _split(node.children[k:], remaining[unknown], w[unknown])
            keep = ~true & ~unknown
            remaining, w = remaining[keep], w[keep]
        if len(remaining) and model.no_true_child == "returnLastPrediction":
            leaf(node, remaining, w)

    def _split(children: list[_Node], rows: Rows, weights: Array) -> None:
        open_masks = []
        for child in children:
            t, u = child.predicate(scope, rows)
            open_masks.append(t | u)
        counts = np.array([_record_count(c) for c in children])
        denominator = sum(m * c for m, c in zip(open_masks, counts, strict=True))
        for child, mask, count in zip(children, open_masks, counts, strict=True):
            if not mask.any():
                continue
            if aggregate:
                share = weights[mask]
            else:
                with np.errstate(all="ignore"):
                    share = weights[mask] * np.where(
                        denominator[mask] > 0, count / denominator[mask], 0.0
                    )
            descend(child, rows[mask], share)

    rows = np.arange(n, dtype=np.intp)
    true, _ = model.root.predicate(scope, rows)
    descend(model.root, rows[true], np.ones(int(true.sum())))
    totals = acc.sum(axis=1)
    with np.errstate(all="ignore"):
        probs = np.where(reached[:, None] & (totals[:, None] > 0), acc / totals[:, None], np.nan)
    probabilities = {c: probs[:, j] for j, c in enumerate(classes)}
    value = classify(probabilities, classes, model.target_type)
    return Result(
        value=value,
        classes=classes,
        probabilities=probabilities,
        entity_id=np.full(n, None, dtype=object),
    )
