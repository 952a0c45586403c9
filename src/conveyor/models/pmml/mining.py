"""MiningModel: segments of models combined by a multipleModelMethod.

Each segment's predicate selects the rows it scores (a segment that selects
every row — GBMs, forests — scores the whole batch at once). Regression
results combine by sum, average, weightedAverage, median, weightedMedian,
max and min; classification by majorityVote, weightedMajorityVote, average,
weightedAverage and max; any model by selectFirst and modelChain (whose
segments see the output fields of the segments before them). Sums and
averages accumulate segment by segment, in float32 under
``x-mathContext="float"``, so results equal the reference evaluator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import (
    CompiledModel,
    Context,
    Result,
    build_model,
    classify,
    find_model,
)
from conveyor.models.pmml.expressions import compile_derived_fields
from conveyor.models.pmml.predicates import compile_predicate, find_predicate
from conveyor.models.pmml.scope import Scope
from conveyor.models.pmml.tree import TreeModel

if TYPE_CHECKING:
    from conveyor.models.pmml._stacked import StackedTrees
    from conveyor.models.pmml._votes import Votes

__all__ = ["MiningModel"]

#: batches up to this many rows always walk the stacked trees (fewest calls per row)
_FEW_ROWS = 64
#: larger batches of trees with at most this many nodes on average go tree by tree
_SMALL_TREES = 10

_REGRESSION = (
    "sum",
    "average",
    "weightedAverage",
    "median",
    "weightedMedian",
    "max",
    "min",
    "weightedSum",
)
_CLASSIFICATION = (
    "majorityVote",
    "weightedMajorityVote",
    "average",
    "weightedAverage",
    "max",
)


class _Segment:
    def __init__(self, el: Element, ctx: Context) -> None:
        self.el = el
        self.id = el.get("id")
        self.weight = float(el.get("weight", "1"))
        pred = find_predicate(el)
        if pred is None:
            raise ModelError(f"{el.where}: <Segment> has no predicate")
        self.always = pred.tag == "True"
        self.predicate = compile_predicate(pred)
        model_el = find_model(el)
        if model_el is None:
            raise ModelError(f"{el.where}: <Segment> contains no model")
        self.model = build_model(model_el, ctx)


def _expand(values: Array, rows: npt.NDArray[np.intp], n: int) -> Array:
    if values.dtype.kind == "O":
        out = np.full(n, None, dtype=object)
    else:
        out = np.full(n, np.nan, dtype=values.dtype)
    out[rows] = values
    return out


def _expand_result(result: Result, rows: npt.NDArray[np.intp], n: int) -> Result:
    def grow(table: dict[Any, Array] | None) -> dict[Any, Array] | None:
        return None if table is None else {k: _expand(v, rows, n) for k, v in table.items()}

    return Result(
        value=_expand(result.value, rows, n),
        classes=result.classes,
        probabilities=grow(result.probabilities),
        entity_id=None if result.entity_id is None else _expand(result.entity_id, rows, n),
        affinity=grow(result.affinity),
        extras={},
        outputs={k: _expand(v, rows, n) for k, v in result.outputs.items()},
    )


class MiningModel(CompiledModel):
    """An ensemble or a chain of models."""

    functions = ("regression", "classification", "clustering")

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        seg_el = el.find("Segmentation")
        if seg_el is None:
            raise unsupported(el, "a MiningModel without Segmentation")
        self.method = seg_el.require("multipleModelMethod")
        allowed: tuple[str, ...] = ("selectFirst", "modelChain")
        allowed += _REGRESSION if self.function == "regression" else _CLASSIFICATION
        if self.method not in allowed:
            raise unsupported(
                seg_el, f"multipleModelMethod={self.method!r} for a {self.function} MiningModel"
            )
        self.missing_treatment = seg_el.get("missingPredictionTreatment", "continue")
        self.threshold = float(seg_el.get("missingThreshold", "1"))
        self.seg_local = compile_derived_fields(seg_el.find("LocalTransformations"))
        self.segments = [_Segment(s, ctx) for s in seg_el.findall("Segment")]
        #: the segments' trees as one graph: None until the first batch decides, False if not
        self._stack: StackedTrees | Literal[False] | None = None
        self._called = False
        #: node tables of plain classification trees combined by vote or average
        self._votes: Votes | None = None
        #: every stacked tree's node scores, for sums and averages of plain regression trees
        self._scores: npt.NDArray[np.floating[Any]] | None = None
        if not self.segments:
            raise ModelError(f"{seg_el.where}: <Segmentation> has no segments")
        self.classes: list[Any] = self.declared_classes() or []
        t = self.targets
        self._start_at_constant = (
            self.float32
            and self.method == "sum"
            and t.factor == 1.0
            and t.minimum is None
            and t.maximum is None
            and t.constant != 0.0
        )
        self._base = t.constant
        if self._start_at_constant:
            self.targets.constant = 0.0
        if self.function != "regression" and not self.classes:
            seen: list[Any] = []
            for s in self.segments:
                for c in getattr(s.model, "classes", None) or []:
                    if c not in seen:
                        seen.append(c)
            self.classes = seen

    def _route_stacked(self, scope: Scope) -> npt.NDArray[np.int64] | None:
        """Every tree's scoring node per row from the stacked graph (``_stacked``), or None.

        Only segmentations of trees that every row reaches (forests, boosted trees)
        are stacked. The graph is compiled on the first batch of several rows, or on
        the second call: a first one-row call (a cold start) walks only its own paths.
        """
        if self._stack is False:
            return None
        if self._stack is None:
            if scope.n == 1 and not self._called:
                self._called = True
                return None
            self._stack = self._build_stack() or False
            if self._stack is False:
                return None
        if scope.n > _FEW_ROWS and self._stack.mean_nodes <= _SMALL_TREES:
            # trees of a few nodes: one array call per node over the rows that reach it
            # (the per-tree walk) costs less than stepping every (row, tree) pair
            return None
        return self._stack.route(scope)

    def _build_stack(self) -> StackedTrees | None:
        from conveyor.models.pmml._stacked import stack

        if self.method in ("selectFirst", "modelChain") or len(self.segments) < 2:
            return None
        trees = []
        for s in self.segments:
            if not (s.always and isinstance(s.model, TreeModel) and s.model.stackable):
                return None
            trees.append(s.model)
        stacked = stack(trees)
        if stacked is None:
            return None
        plain = self.function == "regression" and all(t.plain_regression for t in trees)
        if plain and self.method in ("sum", "average", "weightedAverage", "weightedSum"):
            # each tree's value is its node's score in its own precision, then the ensemble's
            self._scores = np.concatenate(
                [t.scores.astype(t.dtype).astype(self.dtype) for t in trees]
            )
        votes = ("majorityVote", "weightedMajorityVote", "average", "weightedAverage")
        plain = self.function == "classification" and all(t.plain_classification for t in trees)
        if plain and self.method in votes and self.classes:
            from conveyor.models.pmml._votes import Votes

            self._votes = Votes(trees, self.classes, self.method)
        return stacked

    def _stacked_vote(self, nodes: npt.NDArray[np.int64]) -> Result | None:
        """majorityVote / average of plain classification trees, from node tables."""
        if self._votes is None:
            return None
        weighted = self.method.startswith("weighted")
        combined = self._votes.combine(
            nodes, [s.weight if weighted else 1.0 for s in self.segments]
        )
        if combined is None:
            return None  # a tree without a class on some row: the general combination decides
        totals, probs = combined
        majority = self.method in ("majorityVote", "weightedMajorityVote")
        value = classify(totals if majority else probs, self.classes, self.target_type)
        extras = {}
        display = self._display_names(self.segments)
        if display:
            extras["display"] = np.array([display.get(v, v) for v in value.tolist()], dtype=object)
        return Result(value=value, classes=self.classes, probabilities=probs, extras=extras)

    def _stacked_total(self, nodes: npt.NDArray[np.int64], n: int) -> Result | None:
        """sum / average / weightedAverage of plain regression trees, added tree by tree."""
        if self._scores is None:
            return None
        values = self._scores[nodes]
        if np.isnan(values).any():
            return None  # null predictions: the general combination decides
        dtype = self.dtype.type
        weighted = self.method.startswith("weighted")
        weights = [dtype(s.weight if weighted else 1.0) for s in self.segments]
        if weighted:
            values = values * np.array(weights, dtype=self.dtype)[:, None]
        # the first tree adds to the start value, then the others one by one in the
        # ensemble's precision, in document order
        total = dtype(self._base if self._start_at_constant else 0) + values[0]
        if n > _FEW_ROWS:
            for row in values[1:]:
                total += row
        elif len(values) > 1:  # few rows: one call instead of one per tree
            values[0] = total
            total = np.add.accumulate(values, axis=0, dtype=self.dtype, out=values)[-1]
        wsum = dtype(0)
        for w in weights:
            wsum = dtype(wsum + w)
        if self.method in ("average", "weightedAverage"):
            with np.errstate(all="ignore"):
                total = total / wsum if wsum != 0 else np.full(n, np.nan, dtype=self.dtype)
        elif wsum == 0:
            total = np.full(n, np.nan, dtype=self.dtype)
        return Result(value=np.asarray(total, dtype=self.dtype))

    def _stacked_runs(
        self, nodes: npt.NDArray[np.int64], scope: Scope
    ) -> list[tuple[_Segment, Result, npt.NDArray[np.bool_]]]:
        """Every segment's result from its scoring nodes, as scoring it alone gives."""
        assert self._stack
        everyone = np.ones(scope.n, dtype=bool)
        runs = []
        for segment, offset, row in zip(self.segments, self._stack.offsets, nodes, strict=True):
            tree = segment.model
            assert isinstance(tree, TreeModel)
            runs.append((segment, tree.finish(tree.result_for(row - offset), scope), everyone))
        return runs

    def _run(self, segment: _Segment, scope: Scope) -> tuple[Result, npt.NDArray[np.bool_]]:
        """Score one segment on the rows its predicate selects; results sized to the batch."""
        if segment.always:
            return segment.model.evaluate(scope), np.ones(scope.n, dtype=bool)
        true, _ = segment.predicate(scope, None)
        if true.all():
            return segment.model.evaluate(scope), true
        rows = np.flatnonzero(true)
        if len(rows) == 0:
            return _empty(segment, scope.n), true
        sub = segment.model.evaluate(scope.subset(rows))
        return _expand_result(sub, rows, scope.n), true

    def score(self, scope: Scope) -> Result:
        if self.seg_local:
            scope = scope.child(self.seg_local)
        if self.method == "selectFirst":
            return self._select_first(scope)
        if self.method == "modelChain":
            return self._chain(scope)
        runs = None
        nodes = self._route_stacked(scope)
        if nodes is not None:
            total = self._stacked_total(nodes, scope.n)
            if total is None:
                total = self._stacked_vote(nodes)
            if total is not None:
                return total
            runs = self._stacked_runs(nodes, scope)
        if runs is None:
            runs = [(s, *self._run(s, scope)) for s in self.segments]
        if self.function == "regression":
            return self._regression(runs, scope.n)
        return self._vote(runs, scope.n)

    # -- combination methods ------------------------------------------------------------

    def _select_first(self, scope: Scope) -> Result:
        n = scope.n
        pending = np.ones(n, dtype=bool)
        merged: Result | None = None
        for segment in self.segments:
            if not pending.any():
                break
            true, _ = segment.predicate(scope, None)
            take = pending & true
            if not take.any():
                continue
            rows = np.flatnonzero(take)
            sub = segment.model.evaluate(scope if take.all() else scope.subset(rows))
            part = sub if take.all() else _expand_result(sub, rows, n)
            merged = part if merged is None else _merge(merged, part, take)
            pending &= ~take
        if merged is None:
            return _empty(self.segments[0], n)
        return merged

    def _chain(self, scope: Scope) -> Result:
        chain = Scope(scope.n, parent=scope)
        last: Result | None = None
        for segment in self.segments:
            result, _ = self._run(segment, chain)
            for name, col in result.outputs.items():
                chain.put(name, col)
            last = result
        assert last is not None
        return last

    def _weights(self, runs: list[tuple[_Segment, Result, npt.NDArray[np.bool_]]]) -> list[float]:
        weighted = self.method.startswith("weighted")
        return [s.weight if weighted else 1.0 for s, _, _ in runs]

    def _regression(
        self, runs: list[tuple[_Segment, Result, npt.NDArray[np.bool_]]], n: int
    ) -> Result:
        dtype = self.dtype.type
        values = [np.asarray(r.value, dtype=self.dtype) for _, r, _ in runs]
        masks = [m for _, _, m in runs]
        weights = self._weights(runs)
        bad = np.zeros(n, dtype=bool)
        for v, m in zip(values, masks, strict=True):
            bad |= m & np.isnan(v)
        method = self.method
        if method in ("sum", "average", "weightedAverage", "weightedSum"):
            total = np.zeros(n, dtype=self.dtype)
            if self._start_at_constant:
                # XGBoost adds trees to its base score in float32, one at a time
                total = np.full(n, dtype(self._base), dtype=self.dtype)
            wsum = np.zeros(n, dtype=self.dtype)
            for v, m, w in zip(values, masks, weights, strict=True):
                use = m & ~np.isnan(v)
                if method == "sum":
                    total = np.where(use, total + v, total)
                else:
                    total = np.where(use, total + v * dtype(w), total)
                wsum = np.where(use, wsum + dtype(w), wsum)
            out = (
                total
                if method in ("sum", "weightedSum")
                else total / np.where(wsum == 0, np.nan, wsum)
            )
            out = np.where(wsum == 0, np.nan, out)
        elif method in ("max", "min", "median", "weightedMedian"):
            stacked = np.vstack(
                [np.where(m, v, np.nan) for v, m in zip(values, masks, strict=True)]
            )
            with np.errstate(all="ignore"):
                if method == "max":
                    out = _nan_reduce(np.nanmax, stacked)
                elif method == "min":
                    out = _nan_reduce(np.nanmin, stacked)
                elif method == "median":
                    out = _nan_reduce(np.nanmedian, stacked)
                else:
                    out = _weighted_median(stacked, np.array(weights))
        else:
            raise ModelError(f"{self.el.where}: multipleModelMethod {method!r} is not supported")
        if self.missing_treatment == "returnMissing":
            out = np.where(bad, np.nan, out)
        return Result(value=np.asarray(out, dtype=self.dtype))

    def _vote(self, runs: list[tuple[_Segment, Result, npt.NDArray[np.bool_]]], n: int) -> Result:
        classes = self.classes
        weights = self._weights(runs)
        method = self.method
        totals = {c: np.zeros(n) for c in classes}
        count = np.zeros(n)
        bad = np.zeros(n, dtype=bool)
        for (_, r, m), w in zip(runs, weights, strict=True):
            missing = is_missing(r.value)
            bad |= m & missing
            use = m & ~missing
            if method in ("majorityVote", "weightedMajorityVote"):
                for c in classes:
                    totals[c] += np.where(use & np.asarray(r.value == c, dtype=bool), w, 0.0)
                count += np.where(use, w, 0.0)
            else:
                if r.probabilities is None:
                    raise ModelError(
                        f"{self.el.where}: a segment gives no probabilities to {method}"
                    )
                for c in classes:
                    p = r.probabilities.get(c)
                    if p is None:
                        continue
                    p = np.nan_to_num(np.asarray(p, dtype=np.float64))
                    if method == "max":
                        totals[c] = np.where(use, np.maximum(totals[c], p), totals[c])
                    else:
                        totals[c] = totals[c] + np.where(use, p * w, 0.0)
                count += np.where(use, w, 0.0)
        with np.errstate(all="ignore"):
            if method == "max":
                probs = totals
            else:
                probs = {c: np.where(count > 0, t / count, np.nan) for c, t in totals.items()}
        if method == "max":
            probs = {c: np.where(count > 0, p, np.nan) for c, p in probs.items()}
        if self.missing_treatment == "returnMissing":
            probs = {c: np.where(bad, np.nan, p) for c, p in probs.items()}
        if method in ("majorityVote", "weightedMajorityVote"):
            value = classify(totals_masked(totals, count), classes, self.target_type)
        else:
            value = classify(probs, classes, self.target_type)
        if self.missing_treatment == "returnMissing":
            value = value.copy()
            value[bad] = None if value.dtype.kind == "O" else np.nan
        extras = {}
        display = self._display_names([s for s, _, _ in runs])
        if display:
            extras["display"] = np.array([display.get(v, v) for v in value.tolist()], dtype=object)
        return Result(value=value, classes=classes, probabilities=probs, extras=extras)

    @staticmethod
    def _display_names(segments: list[_Segment]) -> dict[Any, Any]:
        names: dict[Any, Any] = {}
        for segment in segments:
            names.update(getattr(segment.model, "display", {}))
        return names


def totals_masked(totals: dict[Any, Array], count: Array) -> dict[Any, Array]:
    return {c: np.where(count > 0, t, np.nan) for c, t in totals.items()}


def _nan_reduce(fn: Any, stacked: Array) -> Array:
    empty = np.isnan(stacked).all(axis=0)
    filled = np.where(empty, 0.0, stacked)
    return np.where(empty, np.nan, fn(np.where(np.isnan(stacked) & ~empty, np.nan, filled), axis=0))


def _weighted_median(stacked: Array, weights: Array) -> Array:
    """Per column: the first value (in sorted order) where cumulative weight reaches half."""
    order = np.argsort(stacked, axis=0, kind="stable")
    values = np.take_along_axis(stacked, order, axis=0)
    w = np.broadcast_to(weights[:, None], stacked.shape)
    w = np.where(np.isnan(values), 0.0, np.take_along_axis(w, order, axis=0))
    cdf = np.cumsum(w, axis=0)
    half = 0.5 * cdf[-1]
    idx = np.argmax(cdf >= half, axis=0)
    out = values[idx, np.arange(stacked.shape[1])]
    return np.where(cdf[-1] == 0, np.nan, out)


def _empty(segment: _Segment, n: int) -> Result:
    value = np.full(n, np.nan)
    return Result(value=value, classes=getattr(segment.model, "classes", None))


def _merge(a: Result, b: Result, take: npt.NDArray[np.bool_]) -> Result:
    """Rows in ``take`` from b, the rest from a."""

    def pick(x: Array | None, y: Array | None) -> Array | None:
        if x is None or y is None:
            return y if x is None else x
        if x.dtype != y.dtype:
            x, y = x.astype(object), y.astype(object)
        return np.where(take, y, x)

    def table(x: dict[Any, Array] | None, y: dict[Any, Array] | None) -> dict[Any, Array] | None:
        if x is None or y is None:
            return y if x is None else x
        keys = list(dict.fromkeys([*x, *y]))
        n = len(take)
        return {k: pick(x.get(k, np.full(n, np.nan)), y.get(k, np.full(n, np.nan))) for k in keys}  # type: ignore[misc]

    value = pick(a.value, b.value)
    assert value is not None
    return Result(
        value=value,
        classes=a.classes or b.classes,
        probabilities=table(a.probabilities, b.probabilities),
        entity_id=pick(a.entity_id, b.entity_id),
        affinity=table(a.affinity, b.affinity),
        outputs=table(a.outputs, b.outputs) or {},
    )
