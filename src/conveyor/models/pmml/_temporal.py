"""PMML's date and time data types as numbers, read and written on whole columns.

Every temporal type lives in a float64 column, as PMML counts it:

==========================  ===============================================
``dateDaysSince[Y]``        days since Y-01-01 (Y = 0, 1960, 1970, 1980)
``dateTimeSecondsSince[Y]`` seconds since Y-01-01T00:00:00
``timeSeconds``, ``time``   seconds since midnight
``date``, ``dateTime``      seconds since 1970-01-01T00:00:00 (a date at 00:00)
==========================  ===============================================

so the "since" types take part in arithmetic with their PMML values (and
their Interval margins and constants are those numbers), and ``date`` and
``dateTime`` share one scale, which is what the date built-ins read. Input
cells may be ISO 8601 strings (``2003-04-01``, ``2003-04-01T12:05:00``,
``12:05:00``), ``datetime``/``date``/``time`` objects, NumPy ``datetime64``
or pandas timestamps, or numbers already in the type's count. Calendar
arithmetic is the proleptic Gregorian calendar with a year 0 (ISO 8601), in
whole seconds, without time zones.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "days_from_civil",
    "format_datetime",
    "is_temporal",
    "parse_temporal",
    "retype",
    "temporal_column",
    "temporal_strings",
]

Floats = npt.NDArray[np.float64]

_SINCE = re.compile(r"^(dateDaysSince|dateTimeSecondsSince)\[(0|1960|1970|1980)\]$")
_INSTANTS = frozenset({"date", "dateTime"})
_CLOCK = frozenset({"time", "timeSeconds"})
_TIME_TEXT = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$")
_DAY = 86400


def is_temporal(data_type: str) -> bool:
    return data_type in _INSTANTS or data_type in _CLOCK or _SINCE.match(data_type) is not None


def days_from_civil(year: Any, month: Any = 1, day: Any = 1) -> Any:
    """Days from 1970-01-01 to the given proleptic Gregorian date (arrays or scalars)."""
    y = np.asarray(year, dtype=np.int64) - (np.asarray(month) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(month, dtype=np.int64)
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(day, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _scale(data_type: str) -> tuple[float, float]:
    """(seconds per unit, instant of zero in seconds since 1970) of the type's count."""
    match = _SINCE.match(data_type)
    if match is None:
        return 1.0, 0.0
    origin = float(days_from_civil(int(match.group(2)))) * _DAY
    return (float(_DAY) if match.group(1) == "dateDaysSince" else 1.0), origin


def _from_instants(seconds: Floats, data_type: str) -> Floats:
    """Seconds since 1970 (or since midnight, for a clock value) -> the type's count."""
    if data_type in _CLOCK:
        return np.asarray(np.mod(seconds, _DAY), dtype=np.float64)
    unit, origin = _scale(data_type)
    out = seconds - origin
    if unit != 1.0:
        out = np.floor(out / unit)
    if data_type == "date":
        out = np.floor(out / _DAY) * _DAY
    return np.asarray(out, dtype=np.float64)


def _cell(value: Any, data_type: str) -> float:
    """One input cell in the type's count; ValueError if it is not a value of the type."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, np.datetime64):
        seconds = float(value.astype("datetime64[s]").astype(np.int64))
        return float(_from_instants(np.array([seconds]), data_type)[0])
    if isinstance(value, dt.datetime):
        return _instant(
            value.date(), value.hour * 3600 + value.minute * 60 + value.second, data_type
        )
    if isinstance(value, dt.date):
        return _instant(value, 0, data_type)
    if isinstance(value, dt.time):
        return float(value.hour * 3600 + value.minute * 60 + value.second)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    clock = _TIME_TEXT.match(text)
    if clock is not None:
        hours, minutes, seconds = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if minutes > 59 or seconds > 59 or hours > 24:
            raise ValueError(text)
        if data_type not in _CLOCK:
            raise ValueError(text)
        return float(hours * 3600 + minutes * 60 + seconds)
    with warnings.catch_warnings():  # a "Z" suffix: NumPy warns that it ignores zones
        warnings.simplefilter("ignore")
        stamp = np.datetime64(text.replace(" ", "T", 1), "s")  # ValueError unless ISO 8601
    if np.isnat(stamp):
        raise ValueError(text)
    seconds = float(stamp.astype(np.int64))
    return float(_from_instants(np.array([seconds]), data_type)[0])


def _instant(day: dt.date, seconds: int, data_type: str) -> float:
    total = float(days_from_civil(day.year, day.month, day.day)) * _DAY + seconds
    return float(_from_instants(np.array([total]), data_type)[0])


def parse_temporal(text: Any, data_type: str) -> float:
    """A document constant or an input cell of a temporal type; ValueError if it is not one."""
    return _cell(text, data_type)


def temporal_column(arr: npt.NDArray[Any], data_type: str) -> tuple[Floats, npt.NDArray[np.bool_]]:
    """An input column -> (counts with NaN where missing or invalid, invalid mask)."""
    n = len(arr)
    if arr.dtype.kind == "M":
        seconds = arr.astype("datetime64[s]")
        missing = np.isnat(seconds)
        values = _from_instants(seconds.astype(np.int64).astype(np.float64), data_type)
        return np.where(missing, np.nan, values), np.zeros(n, dtype=bool)
    if arr.dtype.kind in "fiu":
        return arr.astype(np.float64), np.zeros(n, dtype=bool)
    if arr.dtype.kind in "OUS" and data_type not in _CLOCK:
        fast = _iso_column(arr.astype(object), data_type)
        if fast is not None:
            return fast, np.zeros(n, dtype=bool)
    out = np.full(n, np.nan)
    invalid = np.zeros(n, dtype=bool)
    cache: dict[Any, float | None] = {}  # one parse per distinct cell
    for i, cell in enumerate(arr.tolist()):
        if cell is None or _absent(cell):
            continue
        key = (type(cell), cell)
        if key in cache:
            hit = cache[key]
        else:
            try:
                hit = _cell(cell, data_type)
            except (ValueError, TypeError, OverflowError):
                hit = None
            cache[key] = hit
        if hit is None:
            invalid[i] = True
        else:
            out[i] = hit
    return out, invalid


def _absent(cell: Any) -> bool:
    """NaN, pandas NaT and NA: values that are not equal to themselves."""
    try:
        return bool(cell != cell)  # noqa: PLR0124
    except (TypeError, ValueError):
        return False


def _iso_column(arr: npt.NDArray[Any], data_type: str) -> Floats | None:
    """Numbers, or ISO 8601 dates and date-times, parsed by NumPy in one call; else None."""
    equal: Any = np.equal
    missing = np.asarray(equal(arr, None), dtype=np.bool_)
    filled = arr.copy()
    filled[missing] = "nan"
    try:
        return np.asarray(filled.astype(np.float64), dtype=np.float64)
    except (TypeError, ValueError):
        pass
    if not all(isinstance(v, str) for v in filled.tolist()):
        return None
    filled[missing] = "NaT"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = filled.astype("datetime64[s]")
    except (TypeError, ValueError, OverflowError):
        return None
    nat = np.isnat(stamps)
    if (nat & ~missing).any():
        return None
    values = _from_instants(stamps.astype(np.int64).astype(np.float64), data_type)
    return np.where(nat, np.nan, values)


def retype(values: Floats, source: str, target: str) -> Floats:
    """A column of one temporal type as another (a date as dateDaysSince[1960], ...).

    Dates and date-times go through their instant (seconds since 1970), so a date-time
    as a time of day is its seconds since midnight; a time of day has no date to give,
    and its seconds are kept.
    """
    if source == target or not (is_temporal(source) and is_temporal(target)):
        return values
    if source in _CLOCK:
        return values
    unit, origin = _scale(source)
    instants = values * unit + origin
    return _from_instants(np.asarray(instants, dtype=np.float64), target)


def temporal_strings(values: Floats, data_type: str) -> npt.NDArray[Any]:
    """date, time and dateTime counts as ISO 8601 strings (None where missing)."""
    out = np.full(len(values), None, dtype=object)
    present = ~np.isnan(values)
    seconds = values[present].astype(np.int64)
    if data_type == "time":
        seconds = np.mod(seconds, _DAY)
        text = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in seconds.tolist()]
    else:
        stamps = seconds.astype("datetime64[s]")
        text = np.datetime_as_string(stamps, unit="D" if data_type == "date" else "s").tolist()
    out[present] = text
    return out


def format_datetime(seconds: float, pattern: str) -> str | None:
    """formatDatetime: a date/dateTime (seconds since 1970) through a strftime pattern."""
    days, rest = divmod(int(seconds), _DAY)
    try:
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(days=days, seconds=rest)
    except OverflowError:
        return None
    return moment.strftime(pattern)
