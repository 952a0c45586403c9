"""Where fields are looked up while a batch is scored: input columns, derived fields, outputs.

A Scope is a chain: a model's LocalTransformations sit on top of the
document's TransformationDictionary, which sits on top of the prepared
inputs. A derived field is computed for the whole batch the first time it is
asked for and cached. ``subset`` gives a view of some rows (a segment whose
predicate selects them), indexing the parent's columns lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, factorize

__all__ = ["Derived", "Scope"]

#: A compiled derived field: computes its column in a scope.
Derived = Callable[["Scope"], Array]


class Scope:
    """Field name -> column, for one batch (or one subset of its rows)."""

    def __init__(
        self,
        n: int,
        parent: Scope | None = None,
        columns: Mapping[str, Array] | None = None,
        derived: Mapping[str, Derived] | None = None,
        rows: npt.NDArray[np.intp] | None = None,
        types: Mapping[str, str] | None = None,
    ) -> None:
        self.n = n
        #: PMML data types of this scope's input columns (derived fields carry their own)
        self.types: Mapping[str, str] = types or {}
        self.parent = parent
        self.rows = rows
        self._columns: dict[str, Array] = dict(columns or {})
        self._derived: Mapping[str, Derived] = derived or {}
        self._busy: set[str] = set()
        self._codes: dict[str, tuple[npt.NDArray[np.intp], dict[Any, int]]] = {}
        self._own: set[str] = set(self._columns)
        self.functions: dict[str, Any] = parent.functions if parent is not None else {}

    def get(self, name: str) -> Array:
        col = self._columns.get(name)
        if col is not None:
            return col
        make = self._derived.get(name)
        if make is not None:
            if name in self._busy:
                raise ModelError(f"derived field {name!r} is defined in terms of itself")
            self._busy.add(name)
            try:
                col = make(self)
            finally:
                self._busy.discard(name)
        elif self.parent is not None:
            col = self.parent.get(name)
            if self.rows is not None:
                col = col[self.rows]
        else:
            raise ModelError(
                f"field {name!r} is used by the model but is neither an input nor a derived field"
            )
        self._columns[name] = col
        return col

    def codes(self, name: str) -> tuple[npt.NDArray[np.intp], dict[Any, int]]:
        """A string column as integer codes (-1 for missing) and its value -> code index.

        Categorical predicates compare codes, so a string test over a batch is an
        integer comparison; the encoding is computed once per column and batch.
        """
        hit = self._codes.get(name)
        if hit is not None:
            return hit
        own = name in self._own or name in self._derived
        if not own and self.parent is not None and self.rows is not None:
            codes, index = self.parent.codes(name)
            hit = (codes[self.rows], index)
        elif not own and self.parent is not None:
            hit = self.parent.codes(name)
        else:
            hit = factorize(self.get(name))
        self._codes[name] = hit
        return hit

    def type_of(self, name: str) -> str | None:
        """The declared PMML data type of a field, where the document says it."""
        if name in self.types:
            return self.types[name]
        declared = getattr(self._derived.get(name), "data_type", None)
        if isinstance(declared, str):
            return declared
        if name in self._own:
            return None
        return self.parent.type_of(name) if self.parent is not None else None

    def has(self, name: str) -> bool:
        if name in self._columns or name in self._derived:
            return True
        return self.parent.has(name) if self.parent is not None else False

    def put(self, name: str, column: Array) -> None:
        self._columns[name] = column
        self._own.add(name)
        self._codes.pop(name, None)

    def child(self, derived: Mapping[str, Derived] | None = None) -> Scope:
        """A scope over the same rows with more derived fields (a model's own transformations)."""
        return Scope(self.n, parent=self, derived=derived)

    def subset(self, rows: npt.NDArray[np.intp]) -> Scope:
        """A scope over some of this scope's rows."""
        return Scope(len(rows), parent=self, rows=rows)
