"""PMML's built-in functions, each evaluated on whole columns.

Every function takes its argument columns and returns one column. Unless a
function says otherwise, a missing argument makes the result missing (NaN for
numbers and booleans, None for strings). String functions map each distinct
value once, so a batch costs one Python call per distinct string, not per row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.models.pmml._temporal import days_from_civil, format_datetime, temporal_column
from conveyor.models.pmml._values import NO_MATCH, Array, cast, coerce, is_missing

__all__ = ["BUILTINS", "NO_PROPAGATION", "normal_cdf"]

Impl = Callable[[Sequence[Array]], Array]


def _num(col: Array) -> Array:
    if col.dtype.kind == "O":
        return cast(col, "double")
    return col


def _common(args: Sequence[Array]) -> list[Array]:
    """Numeric arguments in one dtype: float32 only when every argument is float32."""
    nums = [_num(a) for a in args]
    if all(a.dtype == np.float32 for a in nums):
        return nums
    return [a.astype(np.float64, copy=False) for a in nums]


def _unary(fn: Callable[[Array], Array]) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        (x,) = _common(args)
        with np.errstate(all="ignore"):
            return np.asarray(fn(x), dtype=x.dtype)

    return impl


def _binary(fn: Callable[[Array, Array], Array]) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        x, y = _common(args)
        with np.errstate(all="ignore"):
            return np.asarray(fn(x, y), dtype=x.dtype)

    return impl


def _fold(fn: Callable[[Array, Array], Array]) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        cols = _common(args)
        out = cols[0]
        with np.errstate(all="ignore"):
            for c in cols[1:]:
                out = fn(out, c)
        return np.asarray(out, dtype=cols[0].dtype)

    return impl


def _reduce(fn: Callable[..., Array]) -> Impl:
    """min/max/sum/avg/median/product: missing arguments are skipped (PMML 4.4)."""

    def impl(args: Sequence[Array]) -> Array:
        cols = _common(args)
        stacked = np.vstack(cols)
        all_missing = np.isnan(stacked).all(axis=0)
        with np.errstate(all="ignore"):
            out = np.asarray(fn(np.where(np.isnan(stacked), np.nan, stacked), axis=0))
        return np.where(all_missing, np.nan, out).astype(cols[0].dtype)

    return impl


def _nanprod(x: Array, axis: int) -> Array:
    return np.asarray(np.nanprod(x, axis=axis))


def _bool(mask: npt.NDArray[np.bool_], missing: npt.NDArray[np.bool_]) -> Array:
    return np.where(missing, np.nan, mask.astype(np.float64))


def _compare(op: Callable[[Any, Any], Any]) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        x, y = args
        missing = is_missing(x) | is_missing(y)
        if x.dtype.kind == "O" and y.dtype.kind != "O":
            x = _numbers(x, missing)
        elif y.dtype.kind == "O" and x.dtype.kind != "O":
            y = _numbers(y, missing)
        if "O" in (x.dtype.kind, y.dtype.kind):
            if x.dtype.kind != "O":
                x = cast(x, "string")
            if y.dtype.kind != "O":
                y = cast(y, "string")
            res = np.array(
                [
                    m or bool(op(a, b))
                    for a, b, m in zip(x.tolist(), y.tolist(), missing, strict=True)
                ],
                dtype=bool,
            )
        else:
            x, y = _common([x, y])
            with np.errstate(invalid="ignore"):
                res = np.asarray(op(x, y), dtype=bool)
        return _bool(res & ~missing, missing)

    return impl


def _numbers(col: Array, missing: npt.NDArray[np.bool_]) -> Array:
    """Strings compared with a number: as numbers, or dates and times as the numbers their
    columns hold (an untyped Constant "2003-04-01" against a date field); else unchanged."""
    out = np.full(len(col), np.nan)
    parsed: dict[str, float] = {}
    for i, text in enumerate(col.tolist()):
        if missing[i]:
            continue
        if text not in parsed:
            value = coerce(text, np.dtype(np.float64))
            if value is NO_MATCH:
                return col
            parsed[text] = float(value)
        out[i] = parsed[text]
    return out


def _logical(kind: str) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        cols = [_num(a) for a in args]
        if kind == "not":
            (x,) = cols
            return np.where(np.isnan(x), np.nan, (x == 0).astype(np.float64))
        stacked = np.vstack(cols)
        missing = np.isnan(stacked).any(axis=0)
        truth = stacked != 0
        res = truth.all(axis=0) if kind == "and" else truth.any(axis=0)
        return _bool(res, missing)

    return impl


def _is_in(negate: bool) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        x, *values = args
        missing = is_missing(x)
        res = np.zeros(len(x), dtype=bool)
        for v in values:
            res |= _equal_values(x, v)
        return _bool(res != negate, missing)

    return impl


def _equal_values(x: Array, v: Array) -> npt.NDArray[np.bool_]:
    if "O" in (x.dtype.kind, v.dtype.kind):
        return np.array(
            [
                a is not None and a == b
                for a, b in zip(cast(x, "string").tolist(), cast(v, "string").tolist(), strict=True)
            ],
            dtype=bool,
        )
    return np.asarray(_num(x) == _num(v))


def _if(args: Sequence[Array]) -> Array:
    cond = _num(args[0])
    then = args[1]
    other = args[2] if len(args) > 2 else None
    obj = then.dtype.kind == "O" or (other is not None and other.dtype.kind == "O")
    if obj:
        then = cast(then, "string")
        other = cast(other, "string") if other is not None else np.full(len(cond), None, object)
        out = np.where(cond != 0, then, other).astype(object)
        out[np.isnan(cond)] = None
        return out
    if other is None:
        other = np.full(len(cond), np.nan)
    t, o = _common([then, other])
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(cond), np.nan, np.where(cond != 0, t, o)).astype(t.dtype)


def _strings(fn: Callable[..., Any], *, numeric_result: bool = False) -> Impl:
    """Apply ``fn(value, *scalars)`` per distinct string; extra arguments must be constant."""

    def impl(args: Sequence[Array]) -> Array:
        x = cast(args[0], "string")
        extras = [a for a in args[1:]]
        n = len(x)
        out: Array = np.full(n, np.nan) if numeric_result else np.full(n, None, dtype=object)
        cache: dict[tuple[Any, ...], Any] = {}
        for i in range(n):
            value = x[i]
            key_args = tuple(a[i] for a in extras)
            if value is None or any(
                k is None or (isinstance(k, float) and math.isnan(k)) for k in key_args
            ):
                continue
            key = (value, *key_args)
            if key not in cache:
                cache[key] = fn(value, *key_args)
            out[i] = cache[key]
        return out

    return impl


def _substring(s: str, start: Any, length: Any) -> str:
    begin = max(int(float(start)) - 1, 0)
    return s[begin : begin + max(int(float(length)), 0)]


def _format_number(value: str, pattern: Any) -> str:
    pattern = str(pattern)
    try:
        number = float(value)
    except ValueError:
        return value
    if "%" in pattern:
        try:
            return str(pattern % (int(number) if pattern.rstrip()[-1] in "dix" else number))
        except (TypeError, ValueError):
            return value
    return value


def _concat(args: Sequence[Array]) -> Array:
    cols = [cast(a, "string") for a in args]
    n = len(cols[0])
    out = np.full(n, None, dtype=object)
    for i in range(n):
        parts = [c[i] for c in cols]
        if all(p is not None for p in parts):
            out[i] = "".join(parts)
    return out


def _instants(col: Array, kind: str = "dateTime") -> npt.NDArray[np.float64]:
    """A date/dateTime (or, for ``kind="time"``, a time) argument in seconds (``_temporal``)."""
    if col.dtype.kind == "O":
        return temporal_column(col, kind)[0]
    return col.astype(np.float64, copy=False)


def _years(col: Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    year = _num(col).astype(np.float64)
    bad = np.isnan(year)
    return np.where(bad, 1970, year).astype(np.int64), bad


def _days_since_year(args: Sequence[Array]) -> Array:
    """dateDaysSinceYear(date, year): whole days from January 1st of ``year``."""
    x = _instants(args[0])
    year, bad = _years(args[1])
    with np.errstate(invalid="ignore"):
        days = np.floor(x / 86400.0) - days_from_civil(year)
    return np.where(bad, np.nan, days)


def _seconds_since_year(args: Sequence[Array]) -> Array:
    """dateSecondsSinceYear(dateTime, year): seconds from January 1st of ``year``, 00:00:00."""
    x = _instants(args[0])
    year, bad = _years(args[1])
    return np.where(bad, np.nan, x - days_from_civil(year) * 86400.0)


def _seconds_since_midnight(args: Sequence[Array]) -> Array:
    """dateSecondsSinceMidnight(time or dateTime): seconds since the day began."""
    return np.asarray(np.mod(_instants(args[0], "time"), 86400.0), dtype=np.float64)


def _format_datetime(args: Sequence[Array]) -> Array:
    """formatDatetime(date or dateTime, pattern): the strftime pattern applied to the value."""
    x = _instants(args[0])
    patterns = cast(args[1], "string")
    out = np.full(len(x), None, dtype=object)
    cache: dict[tuple[float, str], str | None] = {}
    for i, (value, pattern) in enumerate(zip(x.tolist(), patterns.tolist(), strict=True)):
        if math.isnan(value) or pattern is None:
            continue
        key = (value, pattern)
        if key not in cache:
            cache[key] = format_datetime(value, pattern)
        out[i] = cache[key]
    return out


def _missing_test(want_missing: bool) -> Impl:
    def impl(args: Sequence[Array]) -> Array:
        m = is_missing(args[0])
        return (m if want_missing else ~m).astype(np.float64)

    return impl


def normal_cdf(x: Array) -> Array:
    """The standard normal distribution function, via scipy when installed."""
    try:
        from scipy.special import ndtr

        return np.asarray(ndtr(x), dtype=x.dtype)
    except ImportError:
        erfc = np.frompyfunc(math.erfc, 1, 1)
        return np.asarray(0.5 * erfc(-x / math.sqrt(2.0)), dtype=x.dtype)


def _normal_pdf(x: Array) -> Array:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _round(x: Array) -> Array:
    # PMML (like Java's Math.round) rounds halves up, not to even
    return np.floor(x + 0.5)


def _modulo(x: Array, y: Array) -> Array:
    return np.asarray(x - np.floor(x / y) * y)


def _threshold(x: Array, y: Array) -> Array:
    return np.where(np.isnan(x) | np.isnan(y), np.nan, (x > y).astype(x.dtype))


def _regex_replace(s: str, pattern: Any, replacement: Any) -> str:
    return re.sub(str(pattern), str(replacement).replace("$", "\\"), s)


BUILTINS: dict[str, Impl] = {
    "+": _fold(np.add),
    "-": _binary(np.subtract),
    "*": _fold(np.multiply),
    "/": _binary(np.divide),
    "min": _reduce(np.nanmin),
    "max": _reduce(np.nanmax),
    "sum": _reduce(np.nansum),
    "avg": _reduce(np.nanmean),
    "median": _reduce(np.nanmedian),
    "product": _reduce(_nanprod),
    "log10": _unary(np.log10),
    "ln": _unary(np.log),
    "sqrt": _unary(np.sqrt),
    "abs": _unary(np.abs),
    "exp": _unary(np.exp),
    "expm1": _unary(np.expm1),
    "ln1p": _unary(np.log1p),
    "pow": _binary(np.power),
    "threshold": _binary(_threshold),
    "floor": _unary(np.floor),
    "ceil": _unary(np.ceil),
    "round": _unary(_round),
    "rint": _unary(np.rint),
    "modulo": _binary(_modulo),
    "sin": _unary(np.sin),
    "cos": _unary(np.cos),
    "tan": _unary(np.tan),
    "asin": _unary(np.arcsin),
    "acos": _unary(np.arccos),
    "atan": _unary(np.arctan),
    "atan2": _binary(np.arctan2),
    "sinh": _unary(np.sinh),
    "cosh": _unary(np.cosh),
    "tanh": _unary(np.tanh),
    "hypot": _binary(np.hypot),
    "stdNormalCDF": _unary(normal_cdf),
    "stdNormalPDF": _unary(_normal_pdf),
    "isMissing": _missing_test(True),
    "isNotMissing": _missing_test(False),
    "isValid": _missing_test(False),
    "isNotValid": _missing_test(True),
    "equal": _compare(lambda a, b: a == b),
    "notEqual": _compare(lambda a, b: a != b),
    "lessThan": _compare(lambda a, b: a < b),
    "lessOrEqual": _compare(lambda a, b: a <= b),
    "greaterThan": _compare(lambda a, b: a > b),
    "greaterOrEqual": _compare(lambda a, b: a >= b),
    "and": _logical("and"),
    "or": _logical("or"),
    "not": _logical("not"),
    "isIn": _is_in(False),
    "isNotIn": _is_in(True),
    "if": _if,
    "uppercase": _strings(str.upper),
    "lowercase": _strings(str.lower),
    "trimBlanks": _strings(str.strip),
    "substring": _strings(_substring),
    "stringLength": _strings(len, numeric_result=True),
    "concat": _concat,
    "replace": _strings(_regex_replace),
    "matches": _strings(lambda s, p: 1.0 if re.search(str(p), s) else 0.0, numeric_result=True),
    "formatNumber": _strings(_format_number),
    "formatDatetime": _format_datetime,
    "dateDaysSinceYear": _days_since_year,
    "dateSecondsSinceYear": _seconds_since_year,
    "dateSecondsSinceMidnight": _seconds_since_midnight,
}

#: Functions whose result is not missing just because an argument is.
NO_PROPAGATION = frozenset(
    {
        "isMissing",
        "isNotMissing",
        "isValid",
        "isNotValid",
        "if",
        "min",
        "max",
        "sum",
        "avg",
        "median",
        "product",
    }
)
