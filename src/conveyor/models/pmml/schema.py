"""The DataDictionary and MiningSchema: what each input field is and how bad values are treated.

``prepare_inputs`` turns a user's column-oriented batch into typed columns,
then applies the MiningSchema exactly as PMML specifies: declared missing
values, validity against Values/Intervals, ``invalidValueTreatment``
(returnInvalid raises a ModelError naming the field, row and value),
``outliers`` and ``missingValueReplacement``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._values import (
    Array,
    column_dtype,
    convert,
    is_missing,
    member,
    missing_column,
    parse_scalar,
)
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.errors import InvalidInputError

__all__ = ["DataField", "Interval", "MiningField", "parse_data_dictionary", "parse_mining_schema"]


@dataclass(frozen=True)
class Interval:
    """A continuous range; closure is one of openOpen, openClosed, closedOpen, closedClosed."""

    left: float
    right: float
    closure: str

    @classmethod
    def parse(cls, el: Element) -> Interval:
        left = float(el.get("leftMargin", "-inf"))
        right = float(el.get("rightMargin", "inf"))
        return cls(left, right, el.require("closure"))

    def contains(self, x: Array) -> npt.NDArray[np.bool_]:
        lo = x >= self.left if self.closure.startswith("closed") else x > self.left
        hi = x <= self.right if self.closure.endswith("Closed") else x < self.right
        return np.asarray(lo & hi)


@dataclass
class DataField:
    """A DataField (or a typed derived field): name, types and the values it may take."""

    name: str
    data_type: str
    optype: str
    valid: list[Any] = field(default_factory=list)
    invalid: list[Any] = field(default_factory=list)
    missing: list[Any] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    display: dict[Any, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, el: Element) -> DataField:
        data_type = el.require("dataType")
        df = cls(el.require("name"), data_type, el.get("optype", _default_optype(data_type)))
        for v in el.findall("Value"):
            try:
                value = parse_scalar(v.require("value"), data_type)
            except ValueError:
                if v.get("property") == "missing":
                    df.missing.append(v.require("value"))
                    continue
                raise ModelError(
                    f"{v.where}: value {v.get('value')!r} of field {df.name!r} is not a {data_type}"
                ) from None
            prop = v.get("property", "valid")
            {"valid": df.valid, "invalid": df.invalid, "missing": df.missing}[prop].append(value)
            if v.get("displayValue") is not None:
                df.display[value] = v.get("displayValue")
        df.intervals = [Interval.parse(i) for i in el.findall("Interval")]
        return df

    def validity(self, column: Array, missing: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """A mask of the present values that are invalid for this field."""
        n = len(column)
        bad = np.zeros(n, dtype=bool)
        present = ~missing
        if self.invalid:
            bad |= present & _member(column, self.invalid)
        if self.optype != "continuous" and self.valid:
            bad |= present & ~_member(column, self.valid)
        elif self.intervals and column.dtype.kind != "O":
            with np.errstate(invalid="ignore"):
                inside = np.zeros(n, dtype=bool)
                for interval in self.intervals:
                    inside |= interval.contains(column)
                if self.valid:
                    inside |= np.isin(column, np.array(self.valid, dtype=column.dtype))
            bad |= present & ~inside
        return bad


def _member(column: Array, values: list[Any]) -> npt.NDArray[np.bool_]:
    """Membership of each cell in ``values``; a set lookup per cell for strings."""
    if column.dtype.kind == "O" or len(column) <= _FEW_ROWS:
        # a hash lookup per cell: strings, and small batches where isin's set-up dominates
        return member(column, np.array(values, dtype=column.dtype).tolist())
    return np.isin(column, np.array(values, dtype=column.dtype))


_FEW_ROWS = 16


def _default_optype(data_type: str) -> str:
    return "categorical" if data_type in ("string", "boolean") else "continuous"


@dataclass
class MiningField:
    """One MiningField: usage and the treatments of missing, invalid and outlying values."""

    name: str
    usage: str = "active"
    optype: str | None = None
    missing_replacement: str | None = None
    invalid_treatment: str = "returnInvalid"
    invalid_replacement: str | None = None
    outliers: str = "asIs"
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, el: Element) -> MiningField:
        usage = el.get("usageType", "active")
        if usage == "predicted":
            usage = "target"
        treatment = el.get("invalidValueTreatment", "returnInvalid")
        if treatment not in ("returnInvalid", "asIs", "asMissing", "asValue"):
            raise unsupported(el, f"invalidValueTreatment={treatment!r}")
        low, high = el.get("lowValue"), el.get("highValue")
        return cls(
            name=el.require("name"),
            usage=usage,
            optype=el.get("optype"),
            missing_replacement=el.get("missingValueReplacement"),
            invalid_treatment=treatment,
            invalid_replacement=el.get("invalidValueReplacement"),
            outliers=el.get("outliers", "asIs"),
            low=float(low) if low is not None else None,
            high=float(high) if high is not None else None,
        )

    @property
    def has_treatment(self) -> bool:
        return (
            self.missing_replacement is not None
            or self.invalid_replacement is not None
            or self.outliers != "asIs"
        )


def parse_data_dictionary(el: Element | None) -> dict[str, DataField]:
    if el is None:
        return {}
    return {df.name: df for df in (DataField.parse(d) for d in el.findall("DataField"))}


def parse_mining_schema(el: Element | None) -> list[MiningField]:
    if el is None:
        return []
    return [MiningField.parse(m) for m in el.findall("MiningField")]


def _replace(column: Array, mask: npt.NDArray[np.bool_], text: str, df: DataField) -> Array:
    value = parse_scalar(text, df.data_type)
    out = column.copy()
    out[mask] = value
    return out


def treat_column(
    df: DataField,
    mf: MiningField | None,
    column: Array,
    missing: npt.NDArray[np.bool_],
    invalid: npt.NDArray[np.bool_],
    raw: Any = None,
) -> Array:
    """Apply validity, invalid/outlier/missing treatments to one typed input column."""
    invalid = invalid | df.validity(column, missing)
    treatment = mf.invalid_treatment if mf is not None else "returnInvalid"
    if invalid.any():
        if treatment == "returnInvalid":
            row = int(np.flatnonzero(invalid)[0])
            shown = raw[row] if raw is not None else column[row]
            if isinstance(shown, np.generic):
                shown = shown.item()
            allowed = (
                f"one of {df.valid!r}"
                if df.valid and df.optype != "continuous"
                else ", ".join(f"{i.closure} [{i.left}, {i.right}]" for i in df.intervals)
                or f"a {df.data_type}"
            )
            raise InvalidInputError(
                f"input field {df.name!r}, row {row}: {shown!r} is not a valid value "
                f"(expected {allowed})",
                hint="The model's MiningSchema says invalid values make the input invalid.",
            )
        if treatment == "asMissing":
            column = column.copy()
            column[invalid] = None if column.dtype.kind == "O" else np.nan
            missing = missing | invalid
        elif treatment == "asValue" and mf is not None and mf.invalid_replacement is not None:
            column = _replace(column, invalid, mf.invalid_replacement, df)
        # asIs keeps the value; an unparseable cell has no value, so it stays missing
        missing = missing | (invalid & is_missing(column))
    if mf is not None and mf.outliers != "asIs" and column.dtype.kind != "O":
        low = -math.inf if mf.low is None else mf.low
        high = math.inf if mf.high is None else mf.high
        if mf.outliers == "asMissingValues":
            out = ~missing & ((column < low) | (column > high))
            column = np.where(out, np.nan, column).astype(column.dtype)
            missing = missing | out
        elif mf.outliers == "asExtremeValues":
            column = np.where(missing, column, np.clip(column, low, high)).astype(column.dtype)
    if mf is not None and mf.missing_replacement is not None and missing.any():
        column = _replace(column, missing, mf.missing_replacement, df)
    return column


def prepare_inputs(
    batch: Mapping[str, Any],
    n: int,
    fields: Mapping[str, DataField],
    mining: list[MiningField],
) -> dict[str, Array]:
    """Typed, treated columns for every non-target MiningField; absent columns are missing."""
    columns: dict[str, Array] = {}
    for mf in mining:
        if mf.usage == "target" or mf.name not in fields:
            continue
        df = fields[mf.name]
        if mf.name in batch:
            raw = batch[mf.name]
            missing_markers = frozenset(df.missing)
            column, missing, invalid = convert(raw, df.data_type, missing_markers)
            if len(column) != n:
                raise InvalidInputError(
                    f"input field {mf.name!r} has {len(column)} values but the batch has {n} rows"
                )
            columns[mf.name] = treat_column(df, mf, column, missing, invalid, raw)
        else:
            column = missing_column(df.data_type, n)
            columns[mf.name] = treat_column(
                df, mf, column, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
            )
        assert columns[mf.name].dtype == column_dtype(df.data_type)
    return columns
