"""scikit-learn tree ensembles compiled to flat NumPy arrays, scored a whole batch at once.

scikit-learn spends most of a small ``predict_proba`` call on input
validation and per-tree dispatch (1-2 ms for one row through a 100-tree
GradientBoostingClassifier). :func:`compile_estimator` reads a fitted
estimator's trees once, at load time, into one concatenated node table, and
:meth:`CompiledTrees.predict` walks every tree for every row together, one
tree level per step::

    node = roots                       # (rows, trees)
    repeat max_depth times:
        value = x[row, feature[node]]
        node  = child[node, value > threshold[node]]   # leaves point at themselves

The arithmetic is scikit-learn's own, in the same order, so the outputs are
identical, not merely close: features are rounded to float32 as sklearn's
trees do (HistGradientBoosting keeps float64), missing values follow each
node's ``missing_go_to_left``, forests sum the per-tree probabilities in tree
order and divide by the tree count, boosting adds ``learning_rate * leaf`` to
the init estimator's raw prediction stage by stage, and the loss object of the
estimator itself turns raw scores into probabilities.

Only the exact estimator types in :data:`SUPPORTED` compile, and only when
they are single-output and (for boosting) use a constant init estimator and
numeric features; anything else, and any batch sklearn would refuse (a NaN
where the estimator does not allow one, infinity, the wrong width), is left
to scikit-learn, which also raises its own errors.

>>> compiled = compile_estimator(GradientBoostingClassifier().fit(x, y))   # doctest: +SKIP
>>> compiled.predict(x[:1])["probabilities"]                                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SUPPORTED", "CompiledTrees", "compile_estimator"]

_FORESTS = {
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
}
_SINGLE_TREES = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
}
_BOOSTING = {"GradientBoostingClassifier", "GradientBoostingRegressor"}
_HIST = {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}

#: Estimator class names (in scikit-learn's own modules) that compile.
SUPPORTED = frozenset(_FORESTS | _SINGLE_TREES | _BOOSTING | _HIST)

#: Outputs of a compiled classifier / regressor.
Outputs = dict[str, Any]
#: Turns the per-row accumulated leaf values into the estimator's outputs.
Finish = Callable[[Any], Outputs]


@dataclass(frozen=True)
class _NodeTable:
    """Every tree's nodes in one table, addressed by *slot* ``2 * node``.

    ``children[slot + go_right]`` is the slot of the next node, so one step is
    three gathers and a comparison; a leaf's children are the leaf itself,
    which lets every tree take ``depth`` steps whatever its own depth.
    """

    feature: Any  # (2 * nodes,) intp by slot; 0 at leaves
    threshold: Any  # (2 * nodes,) float64 by slot
    children: Any  # (2 * nodes,) intp: [slot] left child's slot, [slot + 1] right child's
    nan_right: Any  # (2 * nodes,) bool by slot: a missing value goes right here
    roots: Any  # (trees,) intp slots
    depth: int

    def leaves(self, x: Any, has_nan: bool) -> Any:
        """The leaf each row reaches in each tree: (rows, trees) node ids."""
        import numpy as np

        rows, width = x.shape
        flat = x.ravel()
        offsets = np.arange(0, rows * width, width)[:, None]
        slot = np.broadcast_to(self.roots, (rows, self.roots.shape[0]))
        for step in range(self.depth):
            values = flat.take(self.feature.take(slot) + offsets)
            right = values > self.threshold.take(slot)  # False for NaN: left unless told
            if has_nan:
                right |= np.isnan(values) & self.nan_right.take(slot)
            moved = self.children.take(slot + right)
            if step % 4 == 3 and np.array_equal(moved, slot):
                break  # every row sits on a leaf: deep trees' later steps would be idle
            slot = moved
        return slot >> 1


def _table(trees: Sequence[tuple[Any, Any, Any, Any, Any, Any]], depth: int) -> _NodeTable:
    """Concatenate (feature, threshold, left, right, nan_left, is_leaf) per tree."""
    import numpy as np

    sizes = [len(t[0]) for t in trees]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    feature, threshold, children, nan_right = [], [], [], []
    for start, (feat, thr, left, right, nan_left, leaf) in zip(starts, trees, strict=True):
        own = np.arange(len(feat), dtype=np.intp) + start
        pair = np.empty((len(feat), 2), dtype=np.intp)
        pair[:, 0] = np.where(leaf, own, np.asarray(left, dtype=np.intp) + start)
        pair[:, 1] = np.where(leaf, own, np.asarray(right, dtype=np.intp) + start)
        children.append(2 * pair.ravel())
        feature.append(np.repeat(np.where(leaf, 0, feat).astype(np.intp), 2))
        threshold.append(np.repeat(np.where(leaf, 0.0, thr).astype(np.float64), 2))
        nan_right.append(np.repeat(~np.asarray(nan_left, dtype=bool), 2))
    return _NodeTable(
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        children=np.concatenate(children),
        nan_right=np.concatenate(nan_right),
        roots=2 * starts,
        depth=depth,
    )


@dataclass(frozen=True)
class CompiledTrees:
    """A fitted tree estimator as arrays; ``predict`` answers None where sklearn must score."""

    estimator_type: str
    n_features: int
    nodes: _NodeTable
    #: Leaf values indexed by global node id: (nodes,) or (nodes, classes).
    values: Any
    #: Accumulated leaf values (rows, ...) -> outputs.
    reduce: Callable[[Any], Outputs]
    #: sklearn's trees score float32 features; HistGradientBoosting scores float64.
    float32: bool
    #: NaN is a valid input (sklearn's ``allow_nan`` tag); infinity never is for float32 trees.
    allow_nan: bool

    def predict(self, x: Any) -> Outputs | None:
        """Outputs for a 2-D numeric batch, or None when scikit-learn must handle it."""
        import numpy as np

        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features or x.dtype.kind not in "biuf":
            return None
        if self.float32:
            with np.errstate(over="ignore"):
                x = x.astype(np.float32).astype(np.float64)
        else:
            x = x.astype(np.float64, copy=False)
        has_nan = False
        if not np.isfinite(x).all():
            has_nan = bool(np.isnan(x).any())
            if self.float32 and bool(np.isinf(x).any()):
                return None  # sklearn refuses infinity (and float32 overflow)
            if has_nan and not self.allow_nan:
                return None  # sklearn raises its own "Input X contains NaN"
        leaves = self.nodes.leaves(x, has_nan)
        return self.reduce(self.values[leaves])


def _sklearn_tree(tree: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    import numpy as np

    left = tree.children_left
    return (
        tree.feature,
        tree.threshold,
        left,
        tree.children_right,
        tree.missing_go_to_left.astype(bool),
        np.asarray(left) < 0,
    )


def _accumulate(parts: Any, start: Any) -> Any:
    """``start + parts[:, 0] + parts[:, 1] + ...`` added left to right, as sklearn's loops do.

    ``np.add.accumulate`` is sequential by definition (every partial sum is an
    output), unlike ``sum``, whose pairwise order would change the last bits.
    """
    import numpy as np

    rows = parts.shape[0]
    first = np.broadcast_to(start, (rows, 1, *parts.shape[2:]))
    return np.add.accumulate(np.concatenate([first, parts], axis=1), axis=1)[:, -1]


def _forest(est: Any, name: str) -> CompiledTrees | None:
    import numpy as np

    trees = [e.tree_ for e in est.estimators_] if name in _FORESTS else [est.tree_]
    if any(t.n_outputs != 1 for t in trees):
        return None
    table = _table([_sklearn_tree(t) for t in trees], max(t.max_depth for t in trees))
    classifier = name.endswith("Classifier")
    if classifier:
        n_classes = int(est.n_classes_)
        values = np.concatenate([t.value[:, 0, :n_classes] for t in trees])
    else:
        values = np.concatenate([t.value[:, 0, 0] for t in trees])
    single = name in _SINGLE_TREES
    count = len(trees)
    classes = est.classes_ if classifier else None

    def reduce(leaf_values: Any) -> Outputs:
        # Forests: zeros, += each tree's output in order, /= the tree count.
        total = leaf_values[:, 0] if single else _accumulate(leaf_values, 0.0) / count
        if classes is None:
            return {"prediction": total}
        return {"label": classes.take(np.argmax(total, axis=1), axis=0), "probabilities": total}

    return CompiledTrees(
        name, int(est.n_features_in_), table, values, reduce, True, _allow_nan(est)
    )


def _allow_nan(est: Any) -> bool:
    return bool(est.__sklearn_tags__().input_tags.allow_nan)


def _boosting(est: Any, name: str) -> CompiledTrees | None:
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor

    init = est.init_
    if not (isinstance(init, str) and init == "zero") and type(init) not in (
        DummyClassifier,
        DummyRegressor,
    ):
        return None  # a custom init estimator may depend on the row
    stages, k = est.estimators_.shape
    trees = [est.estimators_[s, j].tree_ for s in range(stages) for j in range(k)]
    table = _table([_sklearn_tree(t) for t in trees], max(t.max_depth for t in trees))
    # sklearn adds learning_rate * value; the product is the same double either way.
    values = np.concatenate([est.learning_rate * t.value[:, 0, 0] for t in trees])
    # A constant init estimator: its raw prediction for any row is the one for zeros.
    start = est._raw_predict_init(np.zeros((1, est.n_features_in_), dtype=np.float32))
    classifier = name.endswith("Classifier")
    loss, classes = est._loss, est.classes_ if classifier else None

    def reduce(leaf_values: Any) -> Outputs:
        raw = _accumulate(leaf_values.reshape(leaf_values.shape[0], stages, k), start)
        if k == 1:
            raw = raw.ravel()  # decision_function's shape
        if not classifier:
            return {"prediction": raw}
        encoded = (raw >= 0).astype(int) if raw.ndim == 1 else np.argmax(raw, axis=1)
        assert classes is not None
        return {"label": classes[encoded], "probabilities": loss.predict_proba(raw)}

    return CompiledTrees(name, int(est.n_features_in_), table, values, reduce, True, False)


def _hist(est: Any, name: str) -> CompiledTrees | None:
    import numpy as np

    if getattr(est, "_preprocessor", None) is not None:
        return None  # categorical features go through an encoder first
    predictors = est._predictors
    k = int(est.n_trees_per_iteration_)
    flat = [p for iteration in predictors for p in iteration]
    if not flat or any(bool(p.nodes["is_categorical"].any()) for p in flat):
        return None
    trees = [
        (
            p.nodes["feature_idx"],
            p.nodes["num_threshold"],
            p.nodes["left"],
            p.nodes["right"],
            p.nodes["missing_go_to_left"].astype(bool),
            p.nodes["is_leaf"].astype(bool),
        )
        for p in flat
    ]
    depth = max(int(p.nodes["depth"].max()) for p in flat)
    table = _table(trees, depth)
    values = np.concatenate([p.nodes["value"] for p in flat]).astype(np.float64)
    start = np.zeros((1, k), dtype=est._baseline_prediction.dtype) + est._baseline_prediction
    stages = len(predictors)
    classifier = name.endswith("Classifier")
    loss, classes = est._loss, est.classes_ if classifier else None

    def reduce(leaf_values: Any) -> Outputs:
        raw = _accumulate(leaf_values.reshape(leaf_values.shape[0], stages, k), start)
        if not classifier:
            return {"prediction": loss.link.inverse(raw.ravel())}
        # sklearn: "> 0" for binary, so that a tie goes to class 0 as argmax does.
        encoded = (raw.ravel() > 0).astype(int) if k == 1 else np.argmax(raw, axis=1)
        assert classes is not None
        return {"label": classes[encoded], "probabilities": loss.predict_proba(raw)}

    return CompiledTrees(name, int(est.n_features_in_), table, values, reduce, False, True)


def compile_estimator(est: Any) -> CompiledTrees | None:
    """The compiled form of ``est``, or None when it is not a supported fitted tree model."""
    cls = type(est)
    name = cls.__name__
    if name not in SUPPORTED or not cls.__module__.startswith("sklearn."):
        return None
    if int(getattr(est, "n_outputs_", 1) or 1) != 1:
        return None
    try:
        if name in _BOOSTING:
            return _boosting(est, name)
        if name in _HIST:
            return _hist(est, name)
        return _forest(est, name)
    except (AttributeError, TypeError, ValueError, IndexError):
        # An estimator from a scikit-learn whose internals differ: sklearn scores it.
        return None
