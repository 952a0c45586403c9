"""The trees of a segmentation stacked into one graph of tests, walked for all trees at once.

A forest or a boosted ensemble is tens to hundreds of TreeModels; scoring
them a node at a time costs a Python step per node. Here all of them are
compiled into one graph of *tests*. A test reads one *view* of a field and
asks ``value <= threshold``; it has three successors, for true, false and
unknown (a missing value). The views of a field are ``x``, ``-x`` (so
``x >= t`` is ``-x <= -t``), and, for fields compared with constants by
equality or set membership, the position ``q`` of the value among those
constants (sorted; +inf for any other value), its mirror and ``|q - p|``:
``x == c`` is one test, ``x in {...}`` one or two per run of consecutive
constants.
``x < t`` is ``x <= prev(t)``, the neighbour in the field's own precision,
so ``x-mathContext="float"`` trees keep their 32-bit arithmetic; a graph whose
fields are all float32 walks a float32 matrix.

- ``notEqual`` and ``isNotIn`` swap the successors of ``equal`` and ``isIn``;
  CompoundPredicate and/or/xor/surrogate are chains whose successors carry the
  three-valued logic; isMissing is a test that is never true, whose unknown
  successor is the true one.
- A node's children are tried in order: a false child goes to the next
  sibling, the last one to the noTrueChildStrategy; unknown goes by the
  missingValueStrategy (none: like false; lastPrediction, nullPrediction,
  defaultChild). A last child that is the exact complement of its elder
  sibling (``x > t`` after ``x <= t``) is entered without a test.
- A successor is a test or a terminal (the node whose score the tree returns,
  or the tree's null). Terminals are tests that lead to themselves.

A batch is a set of (row, tree) pairs, each at one test; one step moves every
pair with seven array operations (and three more when values are missing),
and pairs at a terminal leave the set from time to time. What the graph
cannot hold (weightedConfidence and aggregateNodes, string fields compared by
order) makes :func:`stack` or :meth:`StackedTrees.route` return None, and the
caller scores tree by tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from conveyor.models.pmml._values import NO_MATCH, coerce
from conveyor.models.pmml.predicates import PREDICATE_TAGS, parse_array
from conveyor.models.pmml.scope import Scope

if TYPE_CHECKING:
    from conveyor.models.pmml._xml import Element
    from conveyor.models.pmml.tree import TreeModel

__all__ = ["StackedTrees", "stack"]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

#: a graph with more tests than this per tree node is not worth it (deeply nested compounds)
_MAX_TESTS_PER_NODE = 8
#: the pairs at a terminal are dropped once they are this share of the set
_COMPACT_SHARE = 0.25

#: views of a field: x, -x, position among its constants, mirrored position, |position - p|
_X, _NEG, _Q, _QNEG, _EQ = range(5)


class _Unstackable(Exception):
    """A construct the graph does not hold."""


def _fields_of(el: Element, into: dict[str, list[Element]]) -> None:
    """Collect the fields a predicate reads, with the elements that compare them by equality."""
    if el.tag in ("SimplePredicate", "SimpleSetPredicate"):
        into.setdefault(el.require("field"), [])
        op = el.get("operator") if el.tag == "SimplePredicate" else "set"
        if op in ("equal", "notEqual", "set"):
            into[el.require("field")].append(el)
    elif el.tag == "CompoundPredicate":
        for child in el.children:
            if child.tag in PREDICATE_TAGS:
                _fields_of(child, into)


class _Field:
    """One field as the graph reads it: its dtype kind and the constants it is compared with."""

    def __init__(self, name: str, kind: str, equalities: list[Element]) -> None:
        self.name = name
        self.kind = kind  # "f4", "f8" or "O"
        self._constants: dict[str, Any] = {}
        texts: list[str] = []
        for el in equalities:
            if el.tag == "SimplePredicate":
                texts.append(el.require("value"))
            else:
                array = el.find("Array")
                texts.extend(parse_array(array) if array is not None else [])
        values = {v for v in (self.constant(t) for t in texts) if v is not None}
        self.constants: list[Any] = sorted(values)
        self.position = {v: i for i, v in enumerate(self.constants)}

    def below(self, value: float) -> float:
        """The largest value of the column's type under ``value`` (x < v is x <= below(v))."""
        if self.kind == "f4":
            return float(np.nextafter(np.float32(value), np.float32(-np.inf)))
        return math.nextafter(value, -math.inf)

    def above(self, value: float) -> float:
        if self.kind == "f4":
            return float(np.nextafter(np.float32(value), np.float32(np.inf)))
        return math.nextafter(value, math.inf)

    def constant(self, text: str) -> Any:
        """``text`` as a value of this field's column, or None when no value equals it."""
        try:
            return self._constants[text]
        except KeyError:
            pass
        if self.kind == "O":
            value = coerce(text, np.dtype(object))
        else:
            value = coerce(text, np.dtype(np.float32 if self.kind == "f4" else np.float64))
            value = None if value is NO_MATCH or math.isnan(float(value)) else float(value)
        self._constants[text] = value
        return value


class _Builder:
    """Tests as parallel lists; successors are test ids, terminals negative (``~node``)."""

    def __init__(self, fields: dict[str, _Field]) -> None:
        self.fields = fields
        self.names = list(fields)
        self.index = {name: i for i, name in enumerate(self.names)}
        #: (field, view kind, position for _EQ) -> view number
        self.views: dict[tuple[str, int, int], int] = {}
        self.view: list[int] = []
        self.threshold: list[float] = []
        self.succ: list[tuple[int, int, int]] = []  # (false, true, unknown)
        self._memo: dict[tuple[Any, ...], int] = {}

    def test(
        self, field: str, view: int, threshold: float, t: int, f: int, u: int, at: int = 0
    ) -> int:
        key = (field, view, at, threshold, t, f, u)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = len(self.view)
            self.view.append(self.views.setdefault((field, view, at), len(self.views)))
            self.threshold.append(threshold)
            self.succ.append((f, t, u))
        return hit

    def never(self, field: str, known: int, u: int) -> int:
        """A test that is never true: known values go to ``known``, missing ones to ``u``."""
        view = _Q if self.fields[field].kind == "O" else _X
        return self.test(field, view, math.nan, known, known, u)

    def members(self, field: str, values: list[Any], t: int, f: int, u: int) -> int:
        """``x`` is one of ``values`` (constants of the field): one test per run end."""
        spec = self.fields[field]
        last = len(spec.constants) - 1
        positions = sorted({spec.position[v] for v in values})
        if not positions:
            return self.never(field, f, u)
        runs: list[tuple[int, int]] = []
        for p in positions:
            if runs and runs[-1][1] == p - 1:
                runs[-1] = (runs[-1][0], p)
            else:
                runs.append((p, p))
        # q <= b and mirror <= last - a; other values are +inf in both views, so one
        # of the two tests always stands; the other only where the run leaves room
        entry = f
        for a, b in reversed(runs):
            if a == b and 0 < a < last:
                entry = self.test(field, _EQ, 0.0, t, entry, u, at=a)
                continue
            if a == 0:
                entry = self.test(field, _Q, float(b), t, entry, u)
                continue
            inside = t if b == last else self.test(field, _Q, float(b), t, entry, u)
            entry = self.test(field, _QNEG, float(last - a), inside, entry, u)
        return entry

    def predicate(self, el: Element, t: int, f: int, u: int) -> int:
        """The entry of ``el``'s tests: a row ends at t, f or u by the predicate's value."""
        tag = el.tag
        if tag == "True":
            return t
        if tag == "False":
            return f
        if tag == "SimplePredicate":
            return self._simple(el, t, f, u)
        if tag == "SimpleSetPredicate":
            field = el.require("field")
            array = el.find("Array")
            if array is None:
                raise _Unstackable("SimpleSetPredicate without an Array")
            spec = self.fields[field]
            values = [v for v in (spec.constant(x) for x in parse_array(array)) if v is not None]
            if el.require("booleanOperator") == "isIn":
                return self.members(field, values, t, f, u)
            return self.members(field, values, f, t, u)
        if tag == "CompoundPredicate":
            op = el.require("booleanOperator")
            parts = [c for c in el.children if c.tag in PREDICATE_TAGS]
            chain = _CHAINS.get(op)
            if chain is not None:
                return chain(self, parts, 0, t, f, u)
        raise _Unstackable(tag)

    def _simple(self, el: Element, t: int, f: int, u: int) -> int:
        field = el.require("field")
        op = el.require("operator")
        if op == "isMissing":
            return self.never(field, f, t)
        if op == "isNotMissing":
            return self.never(field, t, f)
        spec = self.fields[field]
        value = spec.constant(el.require("value"))
        if op in ("equal", "notEqual"):
            if value is None:
                return self.never(field, t if op == "notEqual" else f, u)
            if op == "equal":
                return self.members(field, [value], t, f, u)
            return self.members(field, [value], f, t, u)
        if spec.kind == "O":
            raise _Unstackable(f"{op} on a string field")
        if value is None:
            return self.never(field, f, u)
        if op == "lessOrEqual":
            return self.test(field, _X, value, t, f, u)
        if op == "greaterOrEqual":
            return self.test(field, _NEG, -value, t, f, u)
        if op == "lessThan":
            if value == -math.inf:
                return self.never(field, f, u)
            return self.test(field, _X, spec.below(value), t, f, u)
        if op == "greaterThan":
            if value == math.inf:
                return self.never(field, f, u)
            return self.test(field, _NEG, -spec.above(value), t, f, u)
        raise _Unstackable(op)

    # three-valued chains: the successors passed down carry what was seen so far

    def _and(self, parts: list[Element], i: int, t: int, f: int, u: int) -> int:
        if i == len(parts):
            return t
        rest_true = self._and(parts, i + 1, t, f, u)
        rest_unknown = self._and(parts, i + 1, u, f, u)
        return self.predicate(parts[i], rest_true, f, rest_unknown)

    def _or(self, parts: list[Element], i: int, t: int, f: int, u: int) -> int:
        if i == len(parts):
            return f
        rest_false = self._or(parts, i + 1, t, f, u)
        rest_unknown = self._or(parts, i + 1, t, u, u)
        return self.predicate(parts[i], t, rest_false, rest_unknown)

    def _xor(self, parts: list[Element], i: int, odd: int, even: int, u: int) -> int:
        if i == len(parts):
            return even
        flipped = self._xor(parts, i + 1, even, odd, u)
        same = self._xor(parts, i + 1, odd, even, u)
        return self.predicate(parts[i], flipped, same, u)

    def _surrogate(self, parts: list[Element], i: int, t: int, f: int, u: int) -> int:
        if i == len(parts):
            return u
        return self.predicate(parts[i], t, f, self._surrogate(parts, i + 1, t, f, u))


_CHAINS: dict[str, Callable[[_Builder, list[Element], int, int, int, int], int]] = {
    "and": _Builder._and,
    "or": _Builder._or,
    "xor": _Builder._xor,
    "surrogate": _Builder._surrogate,
}


def _add_tree(b: _Builder, tree: TreeModel, offset: int) -> int:
    """Compile one tree's nodes into tests; returns the tree's entry."""
    null = ~(offset + len(tree.nodes))
    strategy = tree.missing_strategy
    enter: dict[int, int] = {}
    # children have larger indices than their parent: compile bottom-up, no recursion
    for node in reversed(tree.nodes):
        here = ~(offset + node.index)
        if not node.children:
            enter[node.index] = here
            continue
        if strategy == "lastPrediction":
            unknown: int | None = here
        elif strategy == "nullPrediction":
            unknown = null
        elif strategy == "defaultChild":
            default = node.default_child
            unknown = enter[default.index] if default is not None else here
        else:
            unknown = None  # none: an unknown child is passed over like a false one
        entry = here if tree.no_true_child == "returnLastPrediction" else null
        #: (enter, unknown successor) of the younger sibling when it is this one's complement
        complement: tuple[int, int] | None = None
        for child in reversed(node.children):
            u = entry if unknown is None else unknown
            if complement is not None:
                # where this child is known false its younger sibling holds: no test there
                entry = b.predicate(child.pred_el, enter[child.index], *complement)
            else:
                entry = b.predicate(child.pred_el, enter[child.index], entry, u)
            implied = child.implied and child.pred_el.tag == "SimplePredicate"
            complement = (enter[child.index], u) if implied else None
        enter[node.index] = entry
    return b.predicate(tree.root.pred_el, enter[tree.root.index], null, null)


class _Graph:
    """The tests as arrays, for one combination of the fields' dtypes."""

    def __init__(self, trees: list[TreeModel], fields: dict[str, _Field]) -> None:
        b = _Builder(fields)
        entries = []
        offset = 0
        for tree in trees:
            entries.append(_add_tree(b, tree, offset))
            offset += len(tree.nodes) + 1
        n_tests = len(b.view)
        if n_tests > _MAX_TESTS_PER_NODE * offset:
            raise _Unstackable("too many tests")
        self.fields = fields
        self.views = list(b.views)  # (field, kind, position), in view-number order
        self.n_tests = n_tests
        total = n_tests + offset  # node g is the terminal test n_tests + g, leading to itself

        def test_id(successor: int) -> int:
            return successor if successor >= 0 else n_tests + ~successor

        view = np.zeros(total, dtype=np.int64)  # terminals read view 0: it does not matter
        view[:n_tests] = b.view
        self.view = view
        threshold = np.full(total, math.nan)
        threshold[:n_tests] = b.threshold
        succ = np.repeat(np.arange(total, dtype=np.int64)[:, None], 3, axis=1)
        if n_tests:
            succ[:n_tests] = [[test_id(x) for x in triple] for triple in b.succ]
        self.entries = np.array([test_id(e) for e in entries], dtype=np.int64)
        # a state is 2*test + 0 (complete values) or 4*test + 0; a step adds the outcome:
        # +1 when the test holds, +2 when the value is missing
        self.succ2 = (2 * succ[:, :2]).ravel()
        self.succ4 = (4 * np.concatenate([succ, succ[:, 2:]], axis=1)).ravel()
        #: every threshold and view value is a float32 (float fields, positions): the walk
        #: reads half the bytes and compares in float32, with the same outcomes
        self.narrow = all(
            spec.kind == "f4" or kind in (_Q, _QNEG, _EQ)
            for spec, kind in ((fields[name], kind) for name, kind, _ in b.views)
        )
        if self.narrow:
            threshold = threshold.astype(np.float32)
        self.threshold2 = np.repeat(threshold, 2)
        self.threshold4 = np.repeat(threshold, 4)
        self._lists: dict[int, tuple[list[int], list[float], list[int]]] = {}
        tree_of = np.repeat(np.arange(len(trees)), [len(t.nodes) + 1 for t in trees])
        self.tree_of = tree_of.astype(np.int64)

    def tables(self, stride: int) -> tuple[list[int], list[float], list[int]]:
        """View row offsets (for one row), thresholds and successors as lists, by state."""
        hit = self._lists.get(stride)
        if hit is None:
            threshold = self.threshold4 if stride == 4 else self.threshold2
            succ = self.succ4 if stride == 4 else self.succ2
            hit = self._lists[stride] = (
                np.repeat(self.view, stride).tolist(),
                threshold.tolist(),
                succ.tolist(),
            )
        return hit

    def matrix(self, scope: Scope) -> Floats:
        """The views the tests read, one row each, over the batch's rows."""
        out = np.zeros((max(len(self.views), 1), scope.n), np.float32 if self.narrow else None)
        positions: dict[str, Floats] = {}
        for v, (name, kind, at) in enumerate(self.views):
            col = scope.get(name)
            if kind == _X:
                out[v] = col
                continue
            if kind == _NEG:
                np.negative(col, out=out[v], casting="unsafe")
                continue
            spec = self.fields[name]
            q = positions.get(name)
            if q is None:
                q = positions[name] = _positions(scope, spec, col)
            if kind == _Q:
                out[v] = q
            elif kind == _QNEG:  # other values stay +inf, missing ones NaN
                out[v] = np.where(q == math.inf, q, (len(spec.constants) - 1) - q)
            else:
                np.abs(q - at, out=out[v])
        return out


def _positions(scope: Scope, spec: _Field, col: npt.NDArray[Any]) -> Floats:
    """Each value's position among the field's constants: NaN when missing, +inf when none."""
    if spec.kind == "O":
        codes, index = scope.codes(spec.name)
        lut = np.full(len(index) + 1, math.inf)
        lut[-1] = math.nan  # code -1: missing
        for value, code in index.items():
            lut[code] = spec.position.get(value, math.inf) if isinstance(value, str) else math.inf
        return np.asarray(lut[codes], dtype=np.float64)
    constants = np.array(spec.constants, dtype=np.float64)
    x = col.astype(np.float64, copy=False)
    if not len(constants):
        return np.where(np.isnan(x), math.nan, math.inf)
    j = np.searchsorted(constants, x)
    found = constants[np.minimum(j, len(constants) - 1)] == x
    q = np.where(found, j.astype(np.float64), math.inf)
    q[np.isnan(x)] = math.nan
    return q


def _kind(col: npt.NDArray[Any]) -> str | None:
    if col.dtype == np.float32:
        return "f4"
    if col.dtype.kind in "fiub":
        return "f8"
    return "O" if col.dtype.kind == "O" else None


#: pairs walked together: their working arrays stay in the processor's cache
_CHUNK = 32768
#: steps between looks for pairs at terminals (which lead to themselves, so may step on)
_STEPS = 2
#: this few pairs (a one-row batch) are walked in plain Python: fewer calls than array steps
_FEW = 64


class StackedTrees:
    """Trees compiled into one graph; :meth:`route` gives every tree's scoring node per row."""

    def __init__(self, trees: list[TreeModel]) -> None:
        self.trees = trees
        self.offsets: list[int] = np.cumsum([0] + [len(t.nodes) + 1 for t in trees[:-1]]).tolist()
        self.mean_nodes = sum(len(t.nodes) for t in trees) / len(trees)
        self._equalities: dict[str, list[Element]] = {}
        for tree in trees:
            for node in tree.nodes:
                _fields_of(node.pred_el, self._equalities)
        self._graphs: dict[tuple[str, ...], _Graph | None] = {}

    def graph(self, scope: Scope) -> _Graph | None:
        """The graph for the dtypes of this batch's columns (compiled on first use)."""
        kinds = tuple(_kind(scope.get(name)) or "" for name in self._equalities)
        if kinds in self._graphs:
            return self._graphs[kinds]
        graph: _Graph | None = None
        if "" not in kinds:
            fields = {
                name: _Field(name, kind, els)
                for (name, els), kind in zip(self._equalities.items(), kinds, strict=True)
            }
            try:
                graph = _Graph(self.trees, fields)
            except _Unstackable:
                graph = None
        self._graphs[kinds] = graph
        return graph

    def route(self, scope: Scope) -> Ints | None:
        """Global node index per (tree, row), shape (trees, rows); None if not representable."""
        g = self.graph(scope)
        if g is None:
            return None
        n = scope.n
        x = g.matrix(scope)
        walk = _Walk(g, x, bool(np.isnan(x).any()))
        n_trees = len(self.trees)
        if n_trees * n <= _FEW:
            walk.run_few(g.entries * walk.stride)
            return walk.out.reshape(n_trees, n)
        rows = np.arange(n, dtype=np.int64)
        per_chunk = max(1, _CHUNK // n)  # whole trees, or one tree's rows in slices
        for t in range(0, n_trees, per_chunk):
            entries = g.entries[t : t + per_chunk] * walk.stride
            if n <= _CHUNK:
                walk.run(np.repeat(entries, n), np.tile(rows, len(entries)))
                continue
            for a in range(0, n, _CHUNK):
                part = rows[a : a + _CHUNK]
                walk.run(np.full(len(part), entries[0]), part.copy())
        return walk.out.reshape(n_trees, n)


class _Walk:
    """One batch's walk: its tables, and the scoring node of every pair as pairs end."""

    def __init__(self, g: _Graph, x: Floats, missing: bool) -> None:
        self.g = g
        self.n = x.shape[1]
        self.flat = x.ravel()
        self.missing = missing
        self.stride = 4 if missing else 2
        self.base = np.repeat(g.view * self.n, self.stride)
        self.threshold = g.threshold4 if missing else g.threshold2
        self.succ = g.succ4 if missing else g.succ2
        self.end = self.stride * g.n_tests  # states from here on are terminals
        self.out = np.empty(len(g.entries) * self.n, dtype=np.int64)

    def run_few(self, entries: Ints) -> None:
        """Walk every tree for a handful of rows one pair at a time (tables as lists)."""
        base, threshold, succ = self.g.tables(self.stride)
        flat = self.flat.tolist()
        n, end, stride, missing = self.n, self.end, self.stride, self.missing
        out = []
        for entry in entries.tolist():
            for r in range(n):
                s = entry
                while s < end:
                    v = flat[base[s] * n + r]
                    # v != v: a missing value (NaN) takes the unknown successor
                    s = succ[s + 2] if missing and v != v else succ[s + (v <= threshold[s])]  # noqa: PLR0124
                out.append(s // stride - self.g.n_tests)
        self.out[:] = out

    def run(self, state: Ints, row: Ints) -> None:
        """Step the pairs (state, row) until all are at terminals; they leave in bulk."""
        m = len(state)
        index = np.empty(m, dtype=np.int64)
        step = np.empty(m, dtype=np.int64)
        value = np.empty(m, dtype=self.flat.dtype)
        limit = np.empty(m, dtype=self.flat.dtype)
        flag = np.empty(m, dtype=bool)
        ended = 0
        while m:
            s, r, i, j = state[:m], row[:m], index[:m], step[:m]
            v, t, h = value[:m], limit[:m], flag[:m]
            for _ in range(_STEPS):  # indices are always in range: "wrap" is the cheapest mode
                self.base.take(s, out=i, mode="wrap")
                np.add(i, r, out=i)
                self.flat.take(i, out=v, mode="wrap")
                self.threshold.take(s, out=t, mode="wrap")
                np.less_equal(v, t, out=h)
                np.add(s, h, out=j)
                if self.missing:
                    np.isnan(v, out=h)
                    np.add(j, h, out=j)
                    np.add(j, h, out=j)
                self.succ.take(j, out=s, mode="wrap")
            np.greater_equal(s, self.end, out=h)
            now = int(np.count_nonzero(h))
            if now == ended or (now < _COMPACT_SHARE * m and now < m):
                ended = now
                continue
            done = np.flatnonzero(h)
            nodes = s[done] // self.stride - self.g.n_tests
            self.out[self.g.tree_of[nodes] * self.n + r[done]] = nodes
            keep = np.flatnonzero(~h)
            m = len(keep)
            state[:m] = s[keep]
            row[:m] = r[keep]
            ended = 0


def stack(trees: list[TreeModel]) -> StackedTrees | None:
    """The trees as one graph, or None when one of them needs what the graph cannot hold."""
    if any(tree.splits for tree in trees):
        return None
    return StackedTrees(trees)
