"""Validation: turn request values into typed column arrays that match a model's signature.

Every protocol reduces its payload to *rows of values per field* (or, for
typed tensors, an array) and calls :class:`ColumnBuilder`; the builder checks
each field's type, shape, range, allowed values and NaN, collects a
:class:`~conveyor.serving.errors.Problem` for everything wrong (never
stopping at the first), and raises :class:`InvalidInput` naming them all.

Type checks look at the set of Python types in a column (one C-level pass),
so the common all-numbers case costs one ``set(map(type, ...))`` and one
``numpy.array`` call; element-by-element work happens only on error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

from conveyor.models.base import Field, Signature
from conveyor.serving.errors import InvalidInput, Problem

__all__ = ["MISSING", "ColumnBuilder", "Columns", "expected_type", "flatten_rows"]

MISSING: Any = object()

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_NUMBER = frozenset({int, float})
_FLOATS = frozenset({"float32", "float64"})
_NO_MISSING = (
    "; this model's signature does not allow missing values here (save the model with "
    "an example that has a missing value in this column if the model can take one)"
)


def expected_type(field: Field) -> str:
    """How a field's type reads in an error message, e.g. ``float64[20]``."""
    dims = "".join(f"[{n}]" for n in field.shape)
    values = ""
    if field.values is not None:
        values = " one of " + ", ".join(repr(v) for v in field.values[:20])
    return f"{field.dtype}{dims}{values}"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def flatten_rows(rows: Sequence[Any], shape: tuple[int, ...]) -> tuple[list[Any], str | None]:
    """Flatten per-row nested lists of ``shape``; returns (flat values, error or None)."""
    flat: list[Any] = list(rows)
    for depth, width in enumerate(shape):
        kinds = set(map(type, flat))
        if not kinds <= {list, tuple}:
            bad = next(i for i, v in enumerate(flat) if type(v) not in (list, tuple))
            return [], f"element {bad} at depth {depth + 1} is {_describe(flat[bad])}, not a list"
        lengths = set(map(len, flat))
        if lengths != {width} and flat:
            got = sorted(lengths)
            return [], f"rows must hold {width} values at depth {depth + 1}, got {got}"
        nxt: list[Any] = []
        for item in flat:
            nxt.extend(item)
        flat = nxt
    return flat, None


class Columns(dict[str, Any]):
    """The typed columns of one request, and the fields it sent that the model does not take."""

    __slots__ = ("ignored",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Extra fields left out (not refused: clients send ids along with features).
        self.ignored: tuple[str, ...] = ()


class ColumnBuilder:
    """Collects typed columns for one request and every problem found on the way.

    With ``strict``, a field the model does not take is a problem; otherwise
    it is left out and listed in :attr:`Columns.ignored`, as MLflow does.
    """

    def __init__(
        self,
        signature: Signature,
        fields: dict[str, Field] | None = None,
        *,
        strict: bool = False,
    ) -> None:
        self.signature = signature
        #: The signature's inputs by name (pass them in to save building the map per request).
        self.fields = fields if fields is not None else {f.name: f for f in signature.inputs}
        self.strict = strict
        self.problems: list[Problem] = []
        self.columns = Columns()
        self.ignored: list[str] = []
        self.rows: int | None = None

    @property
    def tensor(self) -> Field | None:
        """The one tensor field of a model fitted on an array, or None.

        A table of as many columns as its width may feed it, in column order,
        as MLflow does.
        """
        inputs = self.signature.inputs
        return inputs[0] if len(inputs) == 1 and len(inputs[0].shape) == 1 else None

    # -- entry points used by the protocols ---------------------------------

    def from_columns(self, data: Mapping[str, Any], where: str = "") -> Columns:
        """Columns given as field name -> list of per-row values."""
        tensor = self.tensor
        if tensor is not None and tensor.name not in data:
            self._check_width(list(data), where)
            columns = [v if isinstance(v, list) else [v] for v in data.values()]
            if len(set(map(len, columns))) > 1:
                self.problems.append(
                    Problem(where or "inputs", "columns hold different numbers of rows")
                )
                raise InvalidInput(self.problems)
            self.add_rows(tensor, [list(row) for row in zip(*columns, strict=True)], where)
            return self.finish()
        for name in data:
            if name not in self.fields:
                self.unknown(name, where)
        for f in self.signature.inputs:
            values = data.get(f.name, MISSING)
            if values is MISSING:
                self.missing(f, where)
                continue
            if not isinstance(values, list):
                values = [values]
            self.add_rows(f, values, where)
        return self.finish()

    def from_records(self, records: Sequence[Any], where: str = "") -> Columns:
        """Rows given as a list of ``{field: value}`` objects."""
        bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if bad:
            self.problems.append(
                Problem(f"{where}[{bad[0]}]", f"is {_describe(records[bad[0]])}", "an object")
            )
            raise InvalidInput(self.problems)
        seen: set[str] = set()
        for record in records:
            seen.update(record)
        tensor = self.tensor
        if tensor is not None and tensor.name not in seen and records:
            names = list(records[0])
            self._check_width(names, where)
            odd = [i for i, r in enumerate(records) if list(r) != names]
            if odd:
                self.problems.append(
                    Problem(
                        f"{where}[{odd[0]}]",
                        "does not name the same fields in the same order as row 0",
                        ", ".join(names),
                    )
                )
                raise InvalidInput(self.problems)
            self.add_rows(tensor, [list(r.values()) for r in records], where)
            return self.finish()
        for name in sorted(seen - self.fields.keys()):
            self.unknown(name, where)
        for f in self.signature.inputs:
            if f.name not in seen:
                self.missing(f, where)
                continue
            values = [r.get(f.name, MISSING) for r in records]
            absent = [i for i, v in enumerate(values) if v is MISSING]
            if absent and not f.optional:
                self.problems.append(
                    Problem(self._name(f.name, where), f"missing in row(s) {absent[:10]}")
                )
                continue
            self.add_rows(f, [None if v is MISSING else v for v in values], where)
        return self.finish()

    def from_rows(self, rows: Sequence[Any], where: str = "") -> Columns:
        """Rows given as lists: a single tensor field's rows, or values in signature order."""
        inputs = self.signature.inputs
        if len(inputs) == 1 and inputs[0].shape:
            self.add_rows(inputs[0], list(rows), where)
            return self.finish()
        if len(inputs) == 1 and all(not isinstance(r, list) for r in rows):
            self.add_rows(inputs[0], list(rows), where)
            return self.finish()
        bad = [i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != len(inputs)]
        if bad:
            self.problems.append(
                Problem(
                    f"{where}[{bad[0]}]",
                    f"is {_describe(rows[bad[0]])}",
                    f"a list of {len(inputs)} values: {', '.join(self.signature.input_names)}",
                )
            )
            raise InvalidInput(self.problems)
        for j, f in enumerate(inputs):
            self.add_rows(f, [r[j] for r in rows], where)
        return self.finish()

    # -- building blocks ---------------------------------------------------

    def _name(self, name: str, where: str) -> str:
        return f"{where}.{name}" if where else name

    def _check_width(self, names: list[str], where: str) -> None:
        """InvalidInput unless the named columns are as many as the tensor field's width."""
        assert self.tensor is not None
        width = self.tensor.shape[0]
        if len(names) == width:
            return
        self.problems.append(
            Problem(
                where or "inputs",
                f"has {len(names)} columns; the model takes one tensor {self.tensor.name!r} of "
                f"{width} values per row",
                f"{width} columns (in the model's feature order) or a field {self.tensor.name!r}",
            )
        )
        raise InvalidInput(self.problems)

    def unknown(self, name: str, where: str = "") -> None:
        if not self.strict:
            self.ignored.append(name)
            return
        expected = ", ".join(self.signature.input_names)
        self.problems.append(
            Problem(
                self._name(name, where),
                "unknown field (this service refuses extra fields: --strict-inputs)",
                f"one of {expected}",
            )
        )

    def missing(self, f: Field, where: str = "") -> None:
        if f.optional:
            return
        self.problems.append(
            Problem(self._name(f.name, where), "missing", expected_type(f)),
        )

    def _rows_ok(self, f: Field, n: int, where: str) -> bool:
        if self.rows is None:
            self.rows = n
            return True
        if n != self.rows:
            self.problems.append(
                Problem(
                    self._name(f.name, where),
                    f"has {n} rows but other fields have {self.rows}",
                )
            )
            return False
        return True

    def add_rows(self, f: Field, rows: Sequence[Any], where: str = "") -> None:
        """Per-row values (nested lists for tensor fields) for field ``f``."""
        if len(f.shape) == 1 and f.dtype in _FLOATS and self.add_float_rows(f, rows):
            return
        flat, error = flatten_rows(rows, f.shape)
        if error is not None:
            self.problems.append(Problem(self._name(f.name, where), error, expected_type(f)))
            return
        self.add_flat(f, flat, len(rows), where)

    def add_float_rows(self, f: Field, rows: Sequence[Any]) -> bool:
        """The common case in one NumPy call: rows of numbers for a vector of floats.

        False (nothing recorded) when anything is unusual; the general path
        then finds and names the problem.
        """
        import numpy as np

        if not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {f.shape[0]}:
            return False
        if not set(map(type, chain.from_iterable(rows))) <= _NUMBER:
            return False
        if self.rows is not None and self.rows != len(rows):
            return False
        array = np.array(rows, dtype=f.dtype)
        if not f.optional and not _finite(chain.from_iterable(rows), array):
            return False
        self.rows = len(rows)
        self.columns[f.name] = array
        return True

    def add_flat(self, f: Field, flat: list[Any], n: int, where: str = "") -> None:
        """Row-major flat values for ``n`` rows of field ``f``."""
        import numpy as np

        name = self._name(f.name, where)
        shape = (n, *f.shape)
        if not self._rows_ok(f, n, where):
            return
        kinds = set(map(type, flat))
        dtype = f.dtype
        problem: str | None = None
        array: Any = None
        if dtype in _FLOATS:
            if not kinds <= _NUMBER:
                nullable = f.optional and kinds <= {int, float, type(None)}
                if nullable:
                    flat = [math.nan if v is None else v for v in flat]
                else:
                    problem = self._first_bad(flat, _NUMBER)
                    if None in flat and kinds <= {int, float, type(None)}:
                        problem += _NO_MISSING
            if problem is None:
                array = np.array(flat, dtype=dtype).reshape(shape)
                if not f.optional and array.size and not _finite(flat, array):
                    rows = sorted({int(i) for i in np.argwhere(~np.isfinite(array))[:, 0]})
                    problem = f"NaN or infinity in row(s) {rows[:10]} where a value is required"
        elif dtype in _INT_RANGES:
            if not kinds <= _NUMBER:
                problem = self._first_bad(flat, _NUMBER)
            elif float in kinds:
                frac = [v for v in flat if type(v) is float and not v.is_integer()]
                if frac:
                    problem = f"has non-integer value {frac[0]!r}"
                else:
                    flat = [int(v) for v in flat]
            if problem is None:
                lo, hi = _INT_RANGES[dtype]
                if flat and (min(flat) < lo or max(flat) > hi):
                    out = next(v for v in flat if not lo <= v <= hi)
                    problem = f"value {out} is out of range [{lo}, {hi}]"
                else:
                    array = np.array(flat, dtype=dtype).reshape(shape)
        elif dtype == "category":
            problem, array = _categories(f, flat, kinds, shape)
        elif dtype.startswith("datetime64"):
            problem, array = _datetimes(f, flat, kinds, shape)
        elif dtype == "bool":
            if not kinds <= {bool}:
                problem = self._first_bad(flat, frozenset({bool}))
            else:
                array = np.array(flat, dtype=bool).reshape(shape)
        else:  # "string" / "object": text values
            allowed = frozenset({str}) if dtype == "string" else frozenset({str, int, float, bool})
            if f.optional:
                allowed = allowed | {type(None)}
            if not kinds <= allowed:
                problem = self._first_bad(flat, allowed)
            else:
                array = np.empty(len(flat), dtype=object)
                array[:] = flat
                array = array.reshape(shape)
        if problem is None and f.values is not None and array is not None and dtype != "category":
            allowed_values = set(f.values)
            unknown = [
                v
                for v in array.ravel().tolist()
                if v not in allowed_values and not (f.optional and _is_missing(v))
            ]
            if unknown:
                problem = f"value {unknown[0]!r} is not one of the known values"
        if problem is not None:
            self.problems.append(Problem(name, problem, expected_type(f)))
            return
        self.columns[f.name] = array

    def add_array(self, f: Field, array: Any, where: str = "") -> None:
        """An already typed array (binary tensor data) for field ``f``; checks shape and dtype."""
        import numpy as np

        name = self._name(f.name, where)
        parsed = f.dtype == "category" or f.dtype.startswith("datetime64")
        if parsed and array.dtype.kind in "OSU":
            # Text tensors (BYTES) for categories and dates take the same checks as JSON values.
            self.add_flat(f, array.ravel().tolist(), array.shape[0], where)
            return
        if array.shape[1:] != f.shape and not (not f.shape and array.shape[1:] == (1,)):
            self.problems.append(
                Problem(name, f"has per-row shape {list(array.shape[1:])}", expected_type(f))
            )
            return
        if not self._rows_ok(f, array.shape[0], where):
            return
        array = array.reshape((array.shape[0], *f.shape))
        kind = array.dtype.kind
        ok = (
            (f.dtype in _FLOATS and kind in "iuf")
            or (f.dtype in _INT_RANGES and kind in "iu")
            or (f.dtype == "bool" and kind == "b")
            or (f.dtype in ("string", "object") and kind in "OSU")
        )
        if not ok:
            self.problems.append(
                Problem(name, f"has element type {array.dtype.name}", expected_type(f))
            )
            return
        if f.dtype in _INT_RANGES and array.size:
            lo, hi = _INT_RANGES[f.dtype]
            if int(array.min()) < lo or int(array.max()) > hi:
                self.problems.append(
                    Problem(name, f"has values out of range [{lo}, {hi}]", expected_type(f))
                )
                return
        if f.dtype in _FLOATS or f.dtype in _INT_RANGES:
            array = array.astype(f.dtype, copy=False)
            if f.dtype in _FLOATS and not f.optional and not np.isfinite(array).all():
                self.problems.append(Problem(name, "contains NaN or infinity", expected_type(f)))
                return
        self.columns[f.name] = array

    @staticmethod
    def _first_bad(flat: list[Any], allowed: frozenset[type]) -> str:
        index, value = next((i, v) for i, v in enumerate(flat) if type(v) not in allowed)
        return f"element {index} is {_describe(value)}"

    def finish(self) -> Columns:
        """The typed columns, or InvalidInput naming every problem found."""
        if self.problems:
            raise InvalidInput(self.problems)
        for f in self.signature.inputs:
            if f.name not in self.columns and f.optional:
                self.columns[f.name] = self._fill(f)
        if self.rows == 0:
            raise InvalidInput([Problem("inputs", "no rows", "at least one row")])
        if self.rows is None:
            # Every field is optional and none was given: scoring would answer no
            # rows for the rows sent (the records protocol then failed with a 500).
            names = ", ".join(self.signature.input_names)
            raise InvalidInput(
                [Problem("inputs", "hold no value for any input field", f"at least one of {names}")]
            )
        if self.ignored:
            self.columns.ignored = tuple(self.ignored)
        return self.columns

    def _fill(self, f: Field) -> Any:
        import numpy as np

        n = self.rows or 0
        if f.dtype in _FLOATS:
            return np.full((n, *f.shape), np.nan, dtype=f.dtype)
        if f.dtype.startswith("datetime64"):
            return np.full((n, *f.shape), np.datetime64("NaT"), dtype=_datetime_dtype(f.dtype))
        array = np.empty((n, *f.shape), dtype=object)
        array.fill(None)
        return array


def _finite(values: Iterable[Any], array: Any) -> bool:
    """Whether every value (Python numbers, and the array made of them) is finite.

    For short inputs a Python sum is the cheapest check: NaN and infinity
    make it non-finite. Finite values whose sum overflows take the exact check.
    """
    if array.size <= 256 and math.isfinite(sum(values)):
        return True
    import numpy as np

    return bool(np.isfinite(array).all())


def _is_missing(value: Any) -> bool:
    """None or NaN: an absent value, which an optional field accepts whatever its values."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _categories(
    f: Field, flat: list[Any], kinds: set[type], shape: tuple[int, ...]
) -> tuple[str | None, Any]:
    """A categorical column's values, checked against the categories the model was trained with.

    An unseen category is refused, unless the field may be missing: then it
    becomes missing, which is what the model does with a category it never saw.
    """
    import numpy as np

    allowed = frozenset({str, int, float, bool}) | ({type(None)} if f.optional else set())
    if not kinds <= allowed:
        return ColumnBuilder._first_bad(flat, allowed), None
    known = set(f.values or ())
    unseen = [v for v in flat if v not in known and not _is_missing(v)]
    if unseen and not f.optional:
        return f"value {unseen[0]!r} is not one of the categories the model was trained with", None
    if unseen or None in flat:
        flat = [v if v in known else None for v in flat]
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return None, array.reshape(shape)


def _datetime_dtype(dtype: str) -> str:
    """``datetime64[ns, UTC]`` -> ``datetime64[ns]``: the NumPy dtype holding UTC times."""
    unit = dtype.partition("[")[2].split(",")[0].rstrip("]").strip() or "ns"
    return f"datetime64[{unit}]"


def _datetimes(
    f: Field, flat: list[Any], kinds: set[type], shape: tuple[int, ...]
) -> tuple[str | None, Any]:
    """ISO-8601 dates and date-times as the field's datetime64 unit (UTC when a zone is given)."""
    import datetime as dt

    import numpy as np

    allowed = frozenset({str}) | ({type(None)} if f.optional else set())
    if not kinds <= allowed:
        return ColumnBuilder._first_bad(flat, allowed), None
    parsed: list[Any] = []
    for i, value in enumerate(flat):
        if value is None:
            parsed.append(None)
            continue
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return f"element {i}: {value!r} is not an ISO-8601 date or date-time", None
        if moment.tzinfo is not None:
            # A zone-aware time is kept as the same instant in UTC; the model sees
            # the zone it was trained with (see SklearnModel).
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        parsed.append(moment)
    array = np.array(
        [np.datetime64("NaT") if v is None else np.datetime64(v) for v in parsed],
        dtype=_datetime_dtype(f.dtype),
    )
    return None, array.reshape(shape)
