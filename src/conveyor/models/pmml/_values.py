"""How PMML values live in arrays: one representation per data type, missing included.

Numbers, integers and booleans are float arrays with NaN for a missing value
(``float`` fields are float32, so ``x-mathContext="float"`` documents compute
in 32 bits; everything else is float64 — integers stay exact up to 2**53).
Dates and times are float64 counts of days or seconds (``_temporal``).
Strings are object arrays with None for a missing value. Booleans are 1.0/0.0.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._temporal import is_temporal, parse_temporal, temporal_column

__all__ = [
    "Array",
    "column_dtype",
    "convert",
    "format_number",
    "is_missing",
    "is_numeric",
    "missing_column",
    "parse_scalar",
]

Array = npt.NDArray[Any]

_NUMERIC = frozenset({"double", "float", "integer", "boolean"})
_TRUE = frozenset({"true", "1", "1.0", "yes"})
_FALSE = frozenset({"false", "0", "0.0", "no"})


def is_numeric(data_type: str) -> bool:
    return data_type in _NUMERIC or is_temporal(data_type)


def column_dtype(data_type: str) -> np.dtype[Any]:
    if data_type == "float":
        return np.dtype(np.float32)
    if data_type in _NUMERIC or is_temporal(data_type):
        return np.dtype(np.float64)
    return np.dtype(object)


def missing_column(data_type: str, n: int) -> Array:
    dtype = column_dtype(data_type)
    if dtype.kind == "O":
        return np.full(n, None, dtype=object)
    return np.full(n, np.nan, dtype=dtype)


#: from this many rows on, string columns are hashed by pandas when the caller loaded it
_HASHED = 256


def _pandas(n: int) -> Any:
    """pandas, if already imported (a DataFrame came in) and the column is long enough.

    Its C hash tables encode and test strings faster than a Python loop; importing it
    here instead would cost a cold start half a second.
    """
    return sys.modules.get("pandas") if n >= _HASHED else None


def factorize(column: Array) -> tuple[npt.NDArray[np.intp], dict[Any, int]]:
    """An object column as integer codes (-1 for None) and its value -> code index."""
    pd = _pandas(len(column))
    if pd is not None:
        codes, uniques = pd.factorize(column)
        if not any(_is_missing_cell(u) for u in uniques.tolist()):
            return np.asarray(codes, dtype=np.intp), {u: i for i, u in enumerate(uniques.tolist())}
    index: dict[Any, int] = {}
    codes = np.fromiter(
        (-1 if v is None else index.setdefault(v, len(index)) for v in column.tolist()),
        dtype=np.intp,
        count=len(column),
    )
    return codes, index


def member(column: Array, values: Sequence[Any]) -> npt.NDArray[np.bool_]:
    """Whether each cell of an object column is one of ``values`` (a hash lookup per cell)."""
    pd = _pandas(len(column))
    if pd is not None:
        return np.asarray(pd.Series(column, copy=False).isin(list(values)).to_numpy(), dtype=bool)
    allowed = frozenset(values)
    return np.fromiter((v in allowed for v in column.tolist()), dtype=bool, count=len(column))


def _all_strings(values: Array) -> bool:
    pd = _pandas(len(values))
    if pd is not None:
        return bool(pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty"))
    return all(type(v) is str for v in values.tolist())


def is_missing(column: Array) -> npt.NDArray[np.bool_]:
    if column.dtype.kind == "O":
        equal: Any = np.equal  # its stubs do not admit None, which object arrays compare fine
        return np.asarray(equal(column, None), dtype=np.bool_)
    if column.dtype.kind == "f":
        return np.isnan(column)
    return np.zeros(len(column), dtype=bool)


def parse_scalar(text: Any, data_type: str) -> Any:
    """One value (a PMML attribute or an input cell) in its column representation.

    Raises ValueError when the text is not a value of the type.
    """
    if is_temporal(data_type):
        return parse_temporal(text, data_type)
    if data_type in _NUMERIC:
        if data_type == "boolean":
            if isinstance(text, bool | np.bool_):
                return 1.0 if text else 0.0
            low = str(text).strip().lower()
            if low in _TRUE:
                return 1.0
            if low in _FALSE:
                return 0.0
            raise ValueError(text)
        value = float(text.strip()) if isinstance(text, str) else float(text)
        if data_type == "integer" and not math.isnan(value) and value != math.floor(value):
            raise ValueError(text)
        if data_type == "float":
            with np.errstate(over="ignore"):
                return np.float32(value)
        return value
    if isinstance(text, float | np.floating):
        return format_number(float(text))
    if isinstance(text, bool | np.bool_):
        return "true" if text else "false"
    return text if isinstance(text, str) else str(text)


def format_number(value: float) -> str:
    """A number as PMML writes it in a categorical context: integers without '.0'."""
    if math.isfinite(value) and value == math.floor(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _is_missing_cell(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    # pandas.NA / NaT compare as neither equal nor unequal to themselves
    try:
        return bool(value != value)  # noqa: PLR0124
    except (TypeError, ValueError):
        return True


def convert(
    raw: Sequence[Any] | Array, data_type: str, missing_values: frozenset[Any] = frozenset()
) -> tuple[Array, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Input cells -> (column, missing mask, invalid mask) for a field of ``data_type``.

    Cells that cannot be read as the type are invalid (their column entry is
    missing); ``missing_values`` lists the field's declared missing markers.
    """
    arr = np.asarray(raw)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise ModelError(f"a PMML input column must be one-dimensional, got shape {arr.shape}")
    n = len(arr)
    dtype = column_dtype(data_type)
    if is_temporal(data_type):
        column, invalid = temporal_column(arr, data_type)
        missing = np.isnan(column) & ~invalid
        for mv in missing_values:
            if isinstance(mv, float) and not math.isnan(mv):
                missing |= column == mv
        return np.where(missing | invalid, np.nan, column), missing, invalid
    if dtype.kind != "O" and arr.dtype.kind in "fiub":
        with np.errstate(over="ignore"):
            column = arr.astype(dtype)
        missing = np.isnan(column) if column.dtype.kind == "f" else np.zeros(n, dtype=bool)
        if data_type == "integer":
            bad = ~missing & (column != np.floor(column))
        else:
            bad = np.zeros(n, dtype=bool)
        if missing_values:
            for mv in missing_values:
                if isinstance(mv, float) and not math.isnan(mv):
                    missing |= column == mv
        column = np.where(bad, np.nan, column).astype(dtype)
        return column, missing, bad
    if arr.dtype.kind in "OUS":
        fast = _convert_fast(arr.astype(object), data_type, missing_values)
        if fast is not None:
            return fast
    column = missing_column(data_type, n)
    missing = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    cache: dict[Any, Any] = {}
    for i, cell in enumerate(arr.tolist()):
        if _is_missing_cell(cell):
            missing[i] = True
            continue
        key = (type(cell), cell)
        if key in cache:
            value = cache[key]
        else:
            try:
                value = parse_scalar(cell, data_type)
            except (ValueError, TypeError):
                value = _INVALID
            cache[key] = value
        if value is _INVALID:
            invalid[i] = True
        elif value in missing_values or (
            dtype.kind != "O" and isinstance(value, float | np.floating) and math.isnan(value)
        ):
            missing[i] = True
        else:
            column[i] = value
    return column, missing, invalid


_INVALID = object()


def _convert_fast(
    arr: Array, data_type: str, missing_values: frozenset[Any]
) -> tuple[Array, npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None:
    """Whole-column conversion for the common cases; None sends the caller cell by cell."""
    n = len(arr)
    equal: Any = np.equal
    with np.errstate(invalid="ignore"):
        missing = np.asarray(equal(arr, None), dtype=np.bool_) | np.asarray(
            arr != arr,  # noqa: PLR0124 - true exactly for NaN cells
            dtype=np.bool_,
        )
    present = arr[~missing]
    if data_type == "string":
        if not _all_strings(present):
            return None
        column = arr.copy()
        column[missing] = None
        if missing_values:
            declared = np.isin(column, np.array(list(missing_values), dtype=object)) & ~missing
            column[declared] = None
            missing |= declared
        return column, missing, np.zeros(n, dtype=bool)
    if data_type not in ("double", "float", "integer"):
        return None
    filled = arr.copy()
    filled[missing] = "nan"
    try:
        values = filled.astype(np.float64)
    except (TypeError, ValueError):
        return None
    missing |= np.isnan(values)
    bad = np.zeros(n, dtype=bool)
    if data_type == "integer":
        bad = ~missing & (values != np.floor(values))
        values[bad] = np.nan
    for mv in missing_values:
        if isinstance(mv, float) and not math.isnan(mv):
            missing |= values == mv
    with np.errstate(over="ignore"):  # like Java's (float) cast: too large becomes infinite
        return values.astype(column_dtype(data_type)), missing, bad


def coerce(text: Any, dtype: np.dtype[Any]) -> Any:
    """A constant from the document in the representation of a column of ``dtype``.

    Returns ``NO_MATCH`` when the constant cannot be a value of that column
    (a string constant compared with a numeric column), so it equals nothing.
    """
    if dtype.kind == "O":
        if isinstance(text, float | np.floating):
            return format_number(float(text))
        return text if isinstance(text, str) else str(text)
    if isinstance(text, int | float | np.number):
        with np.errstate(over="ignore"):
            return dtype.type(text)
    try:
        with np.errstate(over="ignore"):
            return dtype.type(float(str(text).strip()))
    except ValueError:
        low = str(text).strip().lower()
        if low == "true":
            return dtype.type(1.0)
        if low == "false":
            return dtype.type(0.0)
        # a date, date-time or time of day compares as the number its column holds
        for kind in ("dateTime", "time"):
            try:
                return dtype.type(parse_temporal(text, kind))
            except ValueError:
                continue
        return NO_MATCH


NO_MATCH = object()


def cast(column: Array, data_type: str) -> Array:
    """A computed column converted to the representation of ``data_type``."""
    dtype = column_dtype(data_type)
    if is_temporal(data_type):
        if column.dtype.kind in "fiub":
            return column.astype(np.float64, copy=False)
        return temporal_column(column, data_type)[0]
    if dtype.kind == "O":
        if column.dtype.kind == "O":
            return column
        out = np.full(len(column), None, dtype=object)
        present = ~np.isnan(column)
        out[present] = [format_number(float(v)) for v in column[present]]
        return out
    if column.dtype.kind == "O":
        out_f = np.full(len(column), np.nan, dtype=dtype)
        for i, v in enumerate(column.tolist()):
            if v is None:
                continue
            try:
                out_f[i] = parse_scalar(v, "boolean" if data_type == "boolean" else "double")
            except ValueError:
                continue
        column = out_f
    if data_type == "integer":
        with np.errstate(invalid="ignore"):
            column = np.trunc(column)
    with np.errstate(over="ignore"):
        return column.astype(dtype, copy=False)
