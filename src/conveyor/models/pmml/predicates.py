"""Predicates in three-valued logic, evaluated as masks over a batch.

A compiled predicate takes a scope and optional row indices and returns two
boolean masks ``(true, unknown)``; a row that is neither is false. Unknown
arises when a field the predicate reads is missing, and tree models decide
what it means (their missingValueStrategy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.models.pmml._values import NO_MATCH, Array, coerce, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.scope import Scope

__all__ = ["PREDICATE_TAGS", "Predicate", "compile_predicate", "parse_array"]

Mask = npt.NDArray[np.bool_]
Rows = npt.NDArray[np.intp] | None
Predicate = Callable[[Scope, Rows], tuple[Mask, Mask]]

PREDICATE_TAGS = frozenset(
    {"SimplePredicate", "CompoundPredicate", "SimpleSetPredicate", "True", "False"}
)

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def parse_array(el: Element) -> list[str]:
    """The items of an <Array> (strings may be double-quoted, with \\" escapes)."""
    items = []
    for quoted, bare in _TOKEN.findall(el.text):
        items.append(quoted.replace('\\"', '"') if bare == "" else bare)
    return items


def _count(scope: Scope, rows: Rows) -> int:
    return scope.n if rows is None else len(rows)


def _column(scope: Scope, field: str, rows: Rows) -> Array:
    col = scope.get(field)
    return col if rows is None else col[rows]


class _Constants:
    """A predicate's constant(s), coerced once per column dtype they meet."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self._by_dtype: dict[Any, list[Any]] = {}

    def for_dtype(self, dtype: np.dtype[Any]) -> list[Any]:
        values = self._by_dtype.get(dtype)
        if values is None:
            values = [v for v in (coerce(t, dtype) for t in self.texts) if v is not NO_MATCH]
            self._by_dtype[dtype] = values
        return values


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "equal": lambda x, v: x == v,
    "notEqual": lambda x, v: x != v,
    "lessThan": lambda x, v: x < v,
    "lessOrEqual": lambda x, v: x <= v,
    "greaterThan": lambda x, v: x > v,
    "greaterOrEqual": lambda x, v: x >= v,
}


def _simple(el: Element) -> Predicate:
    field = el.require("field")
    op = el.require("operator")
    if op in ("isMissing", "isNotMissing"):
        want = op == "isMissing"

        def missing_test(scope: Scope, rows: Rows) -> tuple[Mask, Mask]:
            m = is_missing(_column(scope, field, rows))
            return (m if want else ~m), np.zeros(len(m), dtype=bool)

        return missing_test
    compare = _OPS.get(op)
    if compare is None:
        raise unsupported(el, f"SimplePredicate operator {op!r}")
    constant = _Constants([el.require("value")])

    def evaluate(scope: Scope, rows: Rows) -> tuple[Mask, Mask]:
        x = _column(scope, field, rows)
        if x.dtype.kind == "f":
            # the hot path of tree models: NaN compares false, so only notEqual needs a mask
            values = constant.for_dtype(x.dtype)
            unknown = np.isnan(x)
            if not values:
                return (~unknown if op == "notEqual" else np.zeros(len(x), bool)), unknown
            hit = compare(x, values[0])
            return (hit & ~unknown if op == "notEqual" else hit), unknown
        if x.dtype.kind == "O" and op in ("equal", "notEqual"):
            codes, index = scope.codes(field)
            if rows is not None:
                codes = codes[rows]
            unknown = codes < 0
            code = index.get(constant.texts[0], -2)
            same = codes == code
            return (same if op == "equal" else ~same) & ~unknown, unknown
        unknown = is_missing(x)
        values = constant.for_dtype(x.dtype)
        if not values:
            hit = np.full(len(x), op == "notEqual")
        elif x.dtype.kind == "O":
            v = values[0]
            hit = np.array([a is not None and bool(compare(a, v)) for a in x.tolist()], dtype=bool)
        else:
            with np.errstate(invalid="ignore"):
                hit = np.asarray(compare(x, values[0]), dtype=bool)
        return hit & ~unknown, unknown

    return evaluate


def _set(el: Element) -> Predicate:
    field = el.require("field")
    negate = el.require("booleanOperator") == "isNotIn"
    array = el.find("Array")
    if array is None:
        raise unsupported(el, "SimpleSetPredicate without an Array")
    constants = _Constants(parse_array(array))

    def evaluate(scope: Scope, rows: Rows) -> tuple[Mask, Mask]:
        x = _column(scope, field, rows)
        if x.dtype.kind == "O":
            codes, index = scope.codes(field)
            if rows is not None:
                codes = codes[rows]
            unknown = codes < 0
            wanted = [index[t] for t in constants.texts if t in index]
            hit = np.zeros(len(codes), dtype=bool)
            for code in wanted:
                hit |= codes == code
            return (hit != negate) & ~unknown, unknown
        unknown = is_missing(x)
        values = constants.for_dtype(x.dtype)
        if values:
            hit = np.isin(x, np.array(values, dtype=x.dtype))
        else:
            hit = np.zeros(len(x), dtype=bool)
        return (hit != negate) & ~unknown, unknown

    return evaluate


def _compound(el: Element) -> Predicate:
    op = el.require("booleanOperator")
    parts = [compile_predicate(c) for c in el.children if c.tag in PREDICATE_TAGS]
    if op not in ("and", "or", "xor", "surrogate"):
        raise unsupported(el, f"CompoundPredicate booleanOperator {op!r}")

    def evaluate(scope: Scope, rows: Rows) -> tuple[Mask, Mask]:
        n = _count(scope, rows)
        if op == "surrogate":
            true = np.zeros(n, dtype=bool)
            pending = np.ones(n, dtype=bool)
            for part in parts:
                t, u = part(scope, rows)
                true |= pending & t
                pending &= u
            return true, pending
        true, unknown = parts[0](scope, rows)
        for part in parts[1:]:
            t, u = part(scope, rows)
            if op == "and":
                # false wins, then unknown, then true
                false = (~true & ~unknown) | (~t & ~u)
                true = true & t
                unknown = ~true & ~false
            elif op == "or":
                # true wins, then unknown, then false
                true = true | t
                unknown = ~true & (unknown | u)
            else:
                unknown = unknown | u
                true = (true ^ t) & ~unknown
        return true, unknown

    return evaluate


def compile_predicate(el: Element) -> Predicate:
    """A predicate element -> a function of (scope, rows) returning (true, unknown) masks."""
    tag = el.tag
    if tag in ("True", "False"):
        value = tag == "True"

        def constant(scope: Scope, rows: Rows) -> tuple[Mask, Mask]:
            n = _count(scope, rows)
            return np.full(n, value), np.zeros(n, dtype=bool)

        return constant
    if tag == "SimplePredicate":
        return _simple(el)
    if tag == "SimpleSetPredicate":
        return _set(el)
    if tag == "CompoundPredicate":
        return _compound(el)
    raise unsupported(el)


def find_predicate(el: Element) -> Element | None:
    for child in el.children:
        if child.tag in PREDICATE_TAGS:
            return child
    return None


#: A predicate on one row: True, False or None (unknown); reads fields through ``get``.
ScalarPredicate = Callable[[Callable[[str], Any]], bool | None]


def compile_scalar_predicate(el: Element) -> ScalarPredicate:
    """The same predicate for a single row, in plain Python (low latency for one-row batches).

    ``get(field)`` returns the row's value as a NumPy scalar of the column's
    dtype, or None when it is missing.
    """
    tag = el.tag
    if tag in ("True", "False"):
        value = tag == "True"
        return lambda get: value
    if tag == "SimplePredicate":
        field = el.require("field")
        op = el.require("operator")
        if op in ("isMissing", "isNotMissing"):
            want = op == "isMissing"
            return lambda get: (get(field) is None) == want
        compare = _OPS.get(op)
        if compare is None:
            raise unsupported(el, f"SimplePredicate operator {op!r}")
        constant = _Constants([el.require("value")])

        def simple(get: Callable[[str], Any]) -> bool | None:
            x = get(field)
            if x is None:
                return None
            values = constant.for_dtype(_dtype_of(x))
            if not values:
                return op == "notEqual"
            return bool(compare(x, values[0]))

        return simple
    if tag == "SimpleSetPredicate":
        field = el.require("field")
        negate = el.require("booleanOperator") == "isNotIn"
        array = el.find("Array")
        if array is None:
            raise unsupported(el, "SimpleSetPredicate without an Array")
        constants = _Constants(parse_array(array))

        def member(get: Callable[[str], Any]) -> bool | None:
            x = get(field)
            if x is None:
                return None
            return (x in constants.for_dtype(_dtype_of(x))) != negate

        return member
    if tag == "CompoundPredicate":
        op = el.require("booleanOperator")
        if op not in ("and", "or", "xor", "surrogate"):
            raise unsupported(el, f"CompoundPredicate booleanOperator {op!r}")
        parts = [compile_scalar_predicate(c) for c in el.children if c.tag in PREDICATE_TAGS]

        def compound(get: Callable[[str], Any]) -> bool | None:
            results = []
            for part in parts:
                r = part(get)
                if op == "surrogate" and r is not None:
                    return r
                if op == "and" and r is False:
                    return False
                if op == "or" and r is True:
                    return True
                results.append(r)
            if op == "surrogate" or None in results:
                return None
            if op == "xor":
                return sum(1 for r in results if r) % 2 == 1
            return op == "and"

        return compound
    raise unsupported(el)


def _dtype_of(x: Any) -> np.dtype[Any]:
    return x.dtype if isinstance(x, np.generic) else np.dtype(object)


def check_predicate(el: Element) -> None:
    """Refuse an unsupported predicate at load time without compiling it (trees compile lazily)."""
    tag = el.tag
    if tag == "SimplePredicate":
        el.require("field")
        op = el.require("operator")
        if op not in _OPS and op not in ("isMissing", "isNotMissing"):
            raise unsupported(el, f"SimplePredicate operator {op!r}")
    elif tag == "SimpleSetPredicate":
        el.require("field")
        el.require("booleanOperator")
        if el.find("Array") is None:
            raise unsupported(el, "SimpleSetPredicate without an Array")
    elif tag == "CompoundPredicate":
        if el.require("booleanOperator") not in ("and", "or", "xor", "surrogate"):
            raise unsupported(
                el, f"CompoundPredicate booleanOperator {el.get('booleanOperator')!r}"
            )
        for child in el.children:
            if child.tag in PREDICATE_TAGS:
                check_predicate(child)
    elif tag not in ("True", "False"):
        raise unsupported(el)
