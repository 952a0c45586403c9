"""Classification trees of a stacked segmentation combined as arrays: votes and averages.

Once ``_stacked`` has found every tree's scoring node, a forest of plain
classification trees (no Output fields, no prior probabilities) needs no
per-tree result: each tree's node indexes two tables built once, the node's
class (as a position in the ensemble's classes) and its probabilities (in
the ensemble's class order). majorityVote adds each tree's weight to its
class, average adds each tree's weighted probabilities, tree by tree in
document order, exactly as the per-segment combination does. A batch where
some tree gives no class (a null prediction) returns None: the per-segment
combination decides what that means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from conveyor.models.pmml._values import is_missing

if TYPE_CHECKING:
    from conveyor.models.pmml.tree import TreeModel

__all__ = ["Votes"]

Floats = npt.NDArray[np.float64]


class Votes:
    """Per-node class positions and probabilities of every stacked tree, in one table each."""

    def __init__(self, trees: list[TreeModel], classes: list[Any], method: str) -> None:
        self.method = method
        self.classes = classes
        positions: list[int] = []
        tables = []
        for tree in trees:
            labels = tree.labels.tolist()
            missing = is_missing(tree.labels).tolist()
            for label, absent in zip(labels, missing, strict=True):
                positions.append(-1 if absent else _position(label, classes))
            table = np.zeros((len(labels), len(classes)))
            own = {c: j for j, c in enumerate(tree.classes)}
            for k, c in enumerate(classes):
                j = own.get(c)
                if j is not None:
                    table[:, k] = np.nan_to_num(tree.probs[:, j])
            tables.append(table)
        #: the ensemble's class of every node (-1: none, or a class the ensemble lacks)
        self.position = np.array(positions, dtype=np.int64)
        self.probabilities = np.vstack(tables)

    def combine(
        self, nodes: npt.NDArray[np.int64], weights: list[float]
    ) -> tuple[dict[Any, Floats], dict[Any, Floats]] | None:
        """(class totals, probabilities) per class over the batch, or None to go tree by tree."""
        position = self.position[nodes]
        if (position < 0).any():
            return None
        n = nodes.shape[1]
        totals = np.zeros((n, len(self.classes)))
        count = 0.0
        rows = np.arange(n)
        for t, w in enumerate(weights):
            if self.method in ("majorityVote", "weightedMajorityVote"):
                totals[rows, position[t]] += w
            else:
                totals += self.probabilities[nodes[t]] * w
            count += w
        with np.errstate(all="ignore"):
            probs = totals / count if count > 0 else np.full_like(totals, np.nan)
        by_class = {c: totals[:, k] for k, c in enumerate(self.classes)}
        if count <= 0:
            by_class = {c: np.full(n, np.nan) for c in self.classes}
        return by_class, {c: probs[:, k] for k, c in enumerate(self.classes)}


def _position(label: Any, classes: list[Any]) -> int:
    for k, c in enumerate(classes):
        if label == c:
            return k
    return -1
