"""TreeModel: nodes compiled once into arrays, batches routed through them as row partitions.

Each node's predicate is evaluated only on the rows that reached its parent,
so a batch costs one vectorised predicate call per visited node, never a
Python step per row; a single row visits only its own path. Scores and
score distributions live in arrays indexed by node, so the result of a batch
is a gather. missingValueStrategy none / lastPrediction / nullPrediction /
defaultChild and noTrueChildStrategy are honoured here; weightedConfidence and
aggregateNodes (classification) split rows across branches in ``_tree_split``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, column_dtype
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result
from conveyor.models.pmml.predicates import (
    Predicate,
    ScalarPredicate,
    check_predicate,
    compile_predicate,
    compile_scalar_predicate,
    find_predicate,
)
from conveyor.models.pmml.scope import Scope

__all__ = ["TreeModel"]

Rows = npt.NDArray[np.intp]


class _Node:
    __slots__ = (
        "_predicate",
        "_scalar",
        "children",
        "default_child",
        "el",
        "id",
        "implied",
        "index",
        "pred_el",
        "score",
    )

    def __init__(self, el: Element, index: int) -> None:
        self.el = el
        self.index = index
        self.id: str = el.get("id", str(index + 1))
        self.score: str | None = el.get("score")
        pred = find_predicate(el)
        if pred is None:
            raise ModelError(f"{el.where}: <Node> has no predicate")
        check_predicate(pred)
        self.pred_el = pred
        self._predicate: Predicate | None = None
        self._scalar: ScalarPredicate | None = None
        self.children: list[_Node] = []
        self.default_child: _Node | None = None
        #: the last child, whose predicate holds exactly where its elder sibling's is
        #: known to be false (x > t after x <= t), or True: its rows need no evaluation
        self.implied = False

    @property
    def predicate(self) -> Predicate:
        """The batch form of the predicate, compiled on first use (a one-row first call
        compiles only the path it walks, which keeps cold starts short)."""
        if self._predicate is None:
            self._predicate = compile_predicate(self.pred_el)
        return self._predicate

    @property
    def scalar(self) -> ScalarPredicate:
        """The one-row form of the predicate, compiled when a one-row batch first needs it."""
        if self._scalar is None:
            self._scalar = compile_scalar_predicate(self.pred_el)
        return self._scalar


_OPPOSITE = {
    "lessThan": "greaterOrEqual",
    "greaterOrEqual": "lessThan",
    "lessOrEqual": "greaterThan",
    "greaterThan": "lessOrEqual",
    "equal": "notEqual",
    "notEqual": "equal",
}


def _complements(first: _Node, second: _Node) -> bool:
    """Whether ``second``'s predicate is True, or the negation of ``first``'s for known values."""
    b = second.pred_el
    if b.tag == "True":
        return True
    a = first.pred_el
    if a.tag != "SimplePredicate" or b.tag != "SimplePredicate":
        return False
    return (
        a.get("field") == b.get("field")
        and a.get("value") == b.get("value")
        and a.get("value") is not None
        and _OPPOSITE.get(a.get("operator", "")) == b.get("operator")
    )


class TreeModel(CompiledModel):
    """A decision tree for classification or regression."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        self.missing_strategy = el.get("missingValueStrategy", "none")
        if self.missing_strategy not in (
            "none",
            "lastPrediction",
            "nullPrediction",
            "defaultChild",
            "weightedConfidence",
            "aggregateNodes",
        ):
            raise unsupported(el, f"missingValueStrategy={self.missing_strategy!r}")
        self.splits = self.missing_strategy in ("weightedConfidence", "aggregateNodes")
        if self.splits and self.function != "classification":
            raise unsupported(el, f"missingValueStrategy={self.missing_strategy!r} for regression")
        self.no_true_child = el.get("noTrueChildStrategy", "returnNullPrediction")
        root_el = el.find("Node")
        if root_el is None:
            raise ModelError(f"{el.where}: <TreeModel> has no <Node>")
        self.nodes: list[_Node] = []
        self.root = self._compile(root_el)
        self._compile_values()

    def _compile(self, el: Element) -> _Node:
        # iterative, so very deep trees do not hit the recursion limit at load time
        root = _Node(el, 0)
        self.nodes.append(root)
        stack = [root]
        while stack:
            node = stack.pop()
            default_id = node.el.get("defaultChild")
            for child_el in node.el.findall("Node"):
                child = _Node(child_el, len(self.nodes))
                self.nodes.append(child)
                node.children.append(child)
                if default_id is not None and child.id == default_id:
                    node.default_child = child
                stack.append(child)
            if len(node.children) >= 2:
                node.children[-1].implied = _complements(node.children[-2], node.children[-1])
            if default_id is not None and node.default_child is None:
                raise ModelError(
                    f"{node.el.where}: defaultChild {default_id!r} is not a child of this node"
                )
        return root

    def _compile_values(self) -> None:
        n_nodes = len(self.nodes)
        self.node_ids = np.array([node.id for node in self.nodes] + [None], dtype=object)
        if self.function == "regression":
            scores = np.full(n_nodes + 1, np.nan, dtype=self.dtype)
            for node in self.nodes:
                if node.score is not None:
                    scores[node.index] = self.dtype.type(float(node.score))
            self.scores = scores
            return
        classes = self.declared_classes() or []
        known = set(classes)
        distributions: list[dict[Any, tuple[float, float | None]]] = []
        for node in self.nodes:
            dist: dict[Any, tuple[float, float | None]] = {}
            for sd in node.el.findall("ScoreDistribution"):
                label = self.label(sd.require("value"))
                prob = sd.get("probability")
                dist[label] = (float(sd.get("recordCount", "0")), float(prob) if prob else None)
                if label not in known:
                    known.add(label)
                    classes.append(label)
            distributions.append(dist)
        for node in self.nodes:
            if node.score is not None and self.label(node.score) not in known:
                known.add(self.label(node.score))
                classes.append(self.label(node.score))
        self.classes = classes
        probs = np.full((n_nodes + 1, len(classes)), np.nan)
        self.counts = np.zeros((n_nodes + 1, len(classes)))
        for node, dist in zip(self.nodes, distributions, strict=True):
            for j, c in enumerate(classes):
                self.counts[node.index, j] = dist.get(c, (0.0, None))[0]
        for node, dist in zip(self.nodes, distributions, strict=True):
            if not dist:
                continue
            total = sum(count for count, _ in dist.values())
            row = np.zeros(len(classes))
            for j, c in enumerate(classes):
                count, prob = dist.get(c, (0.0, None))
                if prob is not None:
                    row[j] = prob
                elif total > 0:
                    row[j] = count / total
            probs[node.index] = row
        self.probs = probs
        dtype = column_dtype(self.target_type)
        labels: Array = np.full(n_nodes + 1, None if dtype.kind == "O" else np.nan, dtype=object)
        for node in self.nodes:
            if node.score is not None:
                labels[node.index] = self.label(node.score)
            elif not np.isnan(probs[node.index]).all():
                labels[node.index] = classes[int(np.argmax(probs[node.index]))]
        self.labels = labels if dtype.kind == "O" else labels.astype(np.float64)

    # -- evaluation -------------------------------------------------------------------

    def route(self, scope: Scope) -> npt.NDArray[np.intp]:
        """The index of the node that scores each row (len(nodes) where the result is null)."""
        null = len(self.nodes)
        if scope.n == 1:
            return np.array([self._walk(scope)], dtype=np.intp)
        assigned = np.full(scope.n, null, dtype=np.intp)
        rows = np.arange(scope.n, dtype=np.intp)
        true, _ = self.root.predicate(scope, rows)
        self._descend(scope, self.root, rows[true], assigned)
        return assigned

    def _walk(self, scope: Scope) -> int:
        """The scoring node of a one-row batch, walked with scalar predicates."""
        values: dict[str, Any] = {}

        def get(field: str) -> Any:
            if field not in values:
                x = scope.get(field)[0]
                missing = x is None or (isinstance(x, np.floating) and np.isnan(x))
                values[field] = None if missing else x
            return values[field]

        null = len(self.nodes)
        if self.root.scalar(get) is not True:
            return null
        node = self.root
        strategy = self.missing_strategy
        while node.children:
            for child in node.children:
                verdict = child.scalar(get)
                if verdict is None and strategy != "none":
                    if strategy == "lastPrediction":
                        return node.index
                    if strategy == "nullPrediction":
                        return null
                    if node.default_child is None:
                        return node.index
                    node = node.default_child
                    break
                if verdict:
                    node = child
                    break
            else:
                return node.index if self.no_true_child == "returnLastPrediction" else null
        return node.index

    def _descend(self, scope: Scope, node: _Node, rows: Rows, out: npt.NDArray[np.intp]) -> None:
        if len(rows) == 0:
            return
        if not node.children:
            out[rows] = node.index
            return
        null = len(self.nodes)
        strategy = self.missing_strategy
        remaining = rows
        known = np.ones(len(rows), dtype=bool)  # rows whose last predicate was known false
        for child in node.children:
            if len(remaining) == 0:
                return
            if child.implied:
                if child.pred_el.tag == "True":
                    self._descend(scope, child, remaining, out)
                    return
                self._descend(scope, child, remaining[known], out)
                remaining = remaining[~known]
                break
            true, unknown = child.predicate(scope, remaining)
            known = ~true & ~unknown
            if strategy != "none" and unknown.any():
                stuck = remaining[unknown]
                if strategy == "lastPrediction":
                    out[stuck] = node.index
                elif strategy == "nullPrediction":
                    out[stuck] = null
                elif node.default_child is not None:
                    self._descend(scope, node.default_child, stuck, out)
                else:
                    out[stuck] = node.index
                decided = true | unknown
            else:
                decided = true
            self._descend(scope, child, remaining[true], out)
            remaining = remaining[~decided]
            known = known[~decided]
        if len(remaining):
            out[remaining] = node.index if self.no_true_child == "returnLastPrediction" else null

    def score(self, scope: Scope) -> Result:
        if self.splits:
            from conveyor.models.pmml._tree_split import split_score

            return split_score(self, scope)
        return self.result_for(self.route(scope))

    @property
    def stackable(self) -> bool:
        """Whether a segmentation may score this tree in its stacked graph (``_stacked``):
        it scores the segmentation's own scope (no transformations or treatments of its own)."""
        return not self.splits and not self.local and not self._treated

    @property
    def plain_regression(self) -> bool:
        """A regression tree whose value is its node's score: no Targets, no Output fields."""
        t = self.targets
        return (
            self.function == "regression"
            and not self.output.fields
            and (t.factor, t.constant, t.minimum, t.maximum) == (1.0, 0.0, None, None)
            and t.cast_integer is None
            and t.default is None
        )

    @property
    def plain_classification(self) -> bool:
        """A classification tree whose result is its node's: no Output fields, no priors."""
        return (
            self.function == "classification"
            and not self.output.fields
            and not (self.targets.priors)
        )

    def result_for(self, nodes: npt.NDArray[np.intp]) -> Result:
        """The raw result of rows that reached ``nodes`` (len(nodes) for a null result)."""
        entity = self.node_ids[nodes]
        if self.function == "regression":
            return Result(value=self.scores[nodes], entity_id=entity)
        probs = self.probs[nodes]
        probabilities = {c: probs[:, j] for j, c in enumerate(self.classes)}
        value = self.labels[nodes]
        return Result(
            value=value, classes=self.classes, probabilities=probabilities, entity_id=entity
        )
