"""Transformations: DerivedField expressions compiled once into column functions.

``compile_expression`` turns Constant, FieldRef, NormContinuous,
NormDiscrete, Discretize, MapValues, Apply (built-in or DefineFunction) and TextIndex
elements into callables ``scope -> column``; TextIndex lives in ``text.py``.
Aggregate and Lag are refused with an error naming the element and its line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._temporal import is_temporal, retype
from conveyor.models.pmml._values import (
    NO_MATCH,
    Array,
    cast,
    coerce,
    column_dtype,
    is_missing,
    parse_scalar,
)
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.functions import BUILTINS, NO_PROPAGATION
from conveyor.models.pmml.schema import Interval
from conveyor.models.pmml.scope import Derived, Scope

__all__ = ["EXPRESSION_TAGS", "UserFunction", "compile_derived_fields", "compile_expression"]

Expr = Callable[[Scope], Array]

EXPRESSION_TAGS = frozenset(
    {
        "Constant",
        "FieldRef",
        "NormContinuous",
        "NormDiscrete",
        "Discretize",
        "MapValues",
        "Apply",
        "TextIndex",
        "Aggregate",
        "Lag",
    }
)


class UserFunction:
    """A DefineFunction: parameters bound to argument columns, then its expression."""

    def __init__(self, el: Element) -> None:
        self.name = el.require("name")
        self.params = [p.require("name") for p in el.findall("ParameterField")]
        self.data_type = el.get("dataType")
        body = [c for c in el.children if c.tag in EXPRESSION_TAGS]
        if len(body) != 1:
            raise ModelError(f"{el.where}: DefineFunction {self.name!r} needs one expression")
        self.body = compile_expression(body[0])
        self.el = el

    def __call__(self, scope: Scope, args: list[Array]) -> Array:
        if len(args) != len(self.params):
            raise ModelError(
                f"{self.el.where}: function {self.name!r} takes {len(self.params)} arguments, "
                f"got {len(args)}"
            )
        inner = Scope(scope.n, columns=dict(zip(self.params, args, strict=True)))
        inner.functions = scope.functions
        result = self.body(inner)
        return cast(result, self.data_type) if self.data_type else result


def _missing_to(el: Element, expr: Expr) -> Expr:
    """Wrap an expression with mapMissingTo (a value for missing inputs/results)."""
    text = el.get("mapMissingTo")
    if text is None:
        return expr

    def with_default(scope: Scope) -> Array:
        col = expr(scope)
        missing = is_missing(col)
        if not missing.any():
            return col
        value = coerce(text, col.dtype)
        if value is NO_MATCH:
            col = col.astype(object)
            value = text
        col = col.copy()
        col[missing] = value
        return col

    return with_default


def compile_expression(el: Element) -> Expr:
    """An expression element -> a function computing its column in a scope."""
    tag = el.tag
    if tag == "Constant":
        return _constant(el)
    if tag == "FieldRef":
        name = el.require("field")
        return _missing_to(el, lambda scope: scope.get(name))
    if tag == "NormContinuous":
        return _missing_to(el, _norm_continuous(el))
    if tag == "NormDiscrete":
        return _norm_discrete(el)
    if tag == "Discretize":
        return _missing_to(el, _discretize(el))
    if tag == "MapValues":
        return _missing_to(el, _map_values(el))
    if tag == "Apply":
        return _apply(el)
    if tag == "TextIndex":
        from conveyor.models.pmml.text import compile_text_index

        terms = [c for c in el.children if c.tag in EXPRESSION_TAGS]
        if len(terms) != 1:
            raise ModelError(f"{el.where}: TextIndex needs one expression giving its term")
        return compile_text_index(el, compile_expression(terms[0]))
    raise unsupported(el)


def _constant(el: Element) -> Expr:
    if el.get("missing") == "true":
        data_type = el.get("dataType", "double")
        return lambda scope: np.full(
            scope.n,
            None if column_dtype(data_type).kind == "O" else np.nan,
            dtype=column_dtype(data_type),
        )
    text = el.text.strip()
    data_type = el.get("dataType")
    if data_type is None:
        try:
            float(text)
            data_type = "double"
        except ValueError:
            data_type = "string"
    try:
        value = parse_scalar(text, data_type)
    except ValueError:
        raise ModelError(f"{el.where}: constant {text!r} is not a {data_type}") from None
    dtype = column_dtype(data_type)
    return lambda scope: np.full(scope.n, value, dtype=dtype)


def _norm_continuous(el: Element) -> Expr:
    field = el.require("field")
    points = [
        (float(p.require("orig")), float(p.require("norm"))) for p in el.findall("LinearNorm")
    ]
    if len(points) < 2:
        raise ModelError(f"{el.where}: NormContinuous needs at least two LinearNorm elements")
    orig = np.array([p[0] for p in points])
    norm = np.array([p[1] for p in points])
    outliers = el.get("outliers", "asIs")

    def evaluate(scope: Scope) -> Array:
        x = scope.get(field)
        x = cast(x, "double") if x.dtype.kind == "O" else x.astype(np.float64)
        with np.errstate(all="ignore"):
            idx = np.clip(np.searchsorted(orig, x, side="right") - 1, 0, len(orig) - 2)
            x0, x1, y0, y1 = orig[idx], orig[idx + 1], norm[idx], norm[idx + 1]
            y = y0 + (x - x0) * (y1 - y0) / (x1 - x0)
        if outliers == "asMissingValues":
            y = np.where((x < orig[0]) | (x > orig[-1]), np.nan, y)
        elif outliers == "asExtremeValues":
            y = np.where(x < orig[0], norm[0], np.where(x > orig[-1], norm[-1], y))
        return np.asarray(y, dtype=np.float64)

    return evaluate


def _norm_discrete(el: Element) -> Expr:
    field = el.require("field")
    text = el.require("value")
    mapped = el.get("mapMissingTo")

    def evaluate(scope: Scope) -> Array:
        x = scope.get(field)
        value = coerce(text, x.dtype)
        hit = np.zeros(len(x), bool) if value is NO_MATCH else np.asarray(x == value, dtype=bool)
        out = hit.astype(np.float64)
        missing = is_missing(x)
        out[missing] = float(mapped) if mapped is not None else np.nan
        return out

    return evaluate


def _discretize(el: Element) -> Expr:
    field = el.require("field")
    bins = []
    for b in el.findall("DiscretizeBin"):
        interval = b.find("Interval")
        if interval is None:
            raise ModelError(f"{b.where}: DiscretizeBin needs an Interval")
        bins.append((Interval.parse(interval), b.require("binValue")))
    default = el.get("defaultValue")
    data_type = el.get("dataType", "string")

    def evaluate(scope: Scope) -> Array:
        x = cast(scope.get(field), "double").astype(np.float64)
        out = np.full(len(x), None, dtype=object)
        done = np.isnan(x)
        with np.errstate(invalid="ignore"):
            for interval, value in bins:
                hit = ~done & interval.contains(x)
                out[hit] = value
                done |= hit
        if default is not None:
            out[~done] = default
        return cast(out, data_type) if data_type != "string" else out

    return evaluate


def _table_rows(table: Element) -> list[dict[str, str]]:
    rows = []
    for row in table.findall("row"):
        rows.append({cell.tag: cell.text.strip() for cell in row.children})
    return rows


def _local(column: str) -> str:
    """A table column's name as the parser keeps cell tags: without a namespace prefix."""
    return column.rsplit(":", 1)[-1]


def _map_values(el: Element) -> Expr:
    # sklearn2pmml names its cells data:input / data:output: without matching them by
    # local name every lookup misses and every row of the model scores missing
    pairs = [
        (p.require("field"), _local(p.require("column"))) for p in el.findall("FieldColumnPair")
    ]
    out_col = _local(el.require("outputColumn"))
    table = el.find("InlineTable")
    if table is None:
        raise unsupported(el, "MapValues without an InlineTable (TableLocator)")
    rows = _table_rows(table)
    default = el.get("defaultValue")
    data_type = el.get("dataType", "string")
    lookup: dict[tuple[str, ...], str] = {}
    for row in rows:
        key = tuple(row.get(col, "") for _, col in pairs)
        lookup.setdefault(key, row.get(out_col, ""))

    def evaluate(scope: Scope) -> Array:
        cols = [cast(scope.get(f), "string") for f, _ in pairs]
        n = scope.n
        out = np.full(n, None, dtype=object)
        for i in range(n):
            key = tuple(c[i] for c in cols)
            if any(k is None for k in key):
                continue
            out[i] = lookup.get(key, default)
        return cast(out, data_type)

    return evaluate


def _apply(el: Element) -> Expr:
    name = el.require("function")
    args = [compile_expression(c) for c in el.children if c.tag in EXPRESSION_TAGS]
    builtin = BUILTINS.get(name)
    default = el.get("defaultValue")
    mapped = el.get("mapMissingTo")
    if el.get("invalidValueTreatment", "returnInvalid") not in ("returnInvalid", "asMissing"):
        raise unsupported(el, f"Apply invalidValueTreatment={el.get('invalidValueTreatment')!r}")

    def evaluate(scope: Scope) -> Array:
        cols = [a(scope) for a in args]
        if builtin is not None:
            try:
                result = builtin(cols)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise ModelError(
                    f"{el.where}: function {name!r} cannot be applied to its arguments ({exc})"
                ) from exc
            if name not in NO_PROPAGATION and cols:
                missing = np.zeros(scope.n, dtype=bool)
                for c in cols:
                    missing |= is_missing(c)
                if missing.any():
                    result = result.copy()
                    result[missing] = None if result.dtype.kind == "O" else np.nan
        else:
            user = scope.functions.get(name)
            if user is None:
                raise unsupported(el, f"function {name!r}")
            result = user(scope, cols)
        if default is not None or mapped is not None:
            missing = is_missing(result)
            if missing.any():
                result = result.copy()
                text = mapped if mapped is not None else default
                value = coerce(text, result.dtype)
                result[missing] = text if value is NO_MATCH else value
        return result

    return evaluate


def compile_derived_fields(parent: Element | None) -> dict[str, Derived]:
    """DerivedFields of a TransformationDictionary or LocalTransformations, by name."""
    if parent is None:
        return {}
    out: dict[str, Derived] = {}
    for df in parent.findall("DerivedField"):
        out[df.require("name")] = _derived(df)
    return out


class _DerivedField:
    """A DerivedField: its expression's column in the field's data type."""

    def __init__(self, el: Element) -> None:
        body = [c for c in el.children if c.tag in EXPRESSION_TAGS]
        if len(body) != 1:
            raise ModelError(f"{el.where}: DerivedField {el.get('name')!r} needs one expression")
        self.expr = compile_expression(body[0])
        self.data_type = el.require("dataType")
        #: a field whose date or time this one re-expresses (a date as dateDaysSince[1960])
        ref = body[0].get("field") if body[0].tag == "FieldRef" else None
        self.source = ref if is_temporal(self.data_type) else None

    def __call__(self, scope: Scope) -> Array:
        col = self.expr(scope)
        if self.source is not None and col.dtype.kind == "f":
            source = scope.type_of(self.source)
            if source is not None:
                col = retype(col.astype(np.float64, copy=False), source, self.data_type)
        return cast(col, self.data_type)


def _derived(el: Element) -> Derived:
    return _DerivedField(el)


def compile_functions(parent: Element | None) -> Mapping[str, Any]:
    if parent is None:
        return {}
    return {f.require("name"): UserFunction(f) for f in parent.findall("DefineFunction")}
