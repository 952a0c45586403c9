"""A loaded PMML document: the model behind Conveyor's Model protocol.

``PmmlModel.predict`` takes a column mapping, a pandas DataFrame or a list
of records, prepares the inputs as the DataDictionary and MiningSchema say,
runs the compiled model on the whole batch and returns every final
OutputField by name (plus the predicted target, and class probabilities when
the document declares no Output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.base import Field, Signature
from conveyor.models.pmml._temporal import temporal_strings
from conveyor.models.pmml._values import Array, format_number
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, build_model, find_model
from conveyor.models.pmml.errors import InvalidInputError
from conveyor.models.pmml.expressions import compile_derived_fields, compile_functions
from conveyor.models.pmml.schema import DataField, parse_data_dictionary, prepare_inputs
from conveyor.models.pmml.scope import Scope

__all__ = ["PmmlModel"]

#: what a malformed document (or a value it cannot take) raises deep inside compilation
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError)

_DTYPES = {
    "double": "float64",
    "float": "float32",
    "integer": "int64",
    "string": "string",
    "boolean": "bool",
}


class PmmlModel:
    """A PMML document compiled for batch scoring."""

    format = "pmml"

    def __init__(self, root: Element) -> None:
        try:
            self._compile(root)
        except ModelError:
            raise
        except _MALFORMED as exc:
            # a number that is not a number, an index out of range...: the document's fault
            raise ModelError(
                f"{root.source}: the document is malformed ({type(exc).__name__}: {exc})",
                hint="Check the attribute values the exporting tool wrote.",
            ) from exc

    def _compile(self, root: Element) -> None:
        if root.tag != "PMML":
            raise ModelError(f"{root.where}: the root element is <{root.tag}>, not <PMML>")
        self.version = root.get("version", "")
        self.fields: dict[str, DataField] = parse_data_dictionary(root.find("DataDictionary"))
        td = root.find("TransformationDictionary")
        self.functions = compile_functions(td)
        self.derived = compile_derived_fields(td)
        model_el = find_model(root)
        if model_el is None:
            raise ModelError(f"{root.where}: the document contains no model element")
        self.model: CompiledModel = build_model(model_el, Context(self.fields, root.source))
        self._signature = self._build_signature()

    # -- Model protocol -----------------------------------------------------------------

    @property
    def signature(self) -> Signature:
        return self._signature

    def predict(self, batch: Any) -> dict[str, Any]:
        try:
            return self._predict(batch)
        except ModelError:
            raise
        except _MALFORMED as exc:
            raise ModelError(
                f"scoring failed: {type(exc).__name__}: {exc}",
                hint="The document or the batch holds a value the evaluator cannot use.",
            ) from exc

    def _predict(self, batch: Any) -> dict[str, Any]:
        columns, n = _columns(batch)
        if self.model.function == "associationRules":
            result, scope = self._baskets(columns, n)
        else:
            inputs = prepare_inputs(columns, n, self.fields, self.model.mining)
            types = {name: df.data_type for name, df in self.fields.items()}
            scope = Scope(n, columns=inputs, derived=self.derived, types=types)
            scope.functions = dict(self.functions)
            result = self.model.evaluate(scope)
        out: dict[str, Any] = {}
        target = self.model.target_name
        finals = self.model.output.final_fields
        if (target is not None or not finals) and self.model.function != "associationRules":
            name = target or "predicted"
            out[name] = self._present(result.value, self._target_type())
        if not finals and result.probabilities is not None:
            for c, p in result.probabilities.items():
                out[f"probability({_label(c)})"] = np.asarray(p, dtype=np.float64)
        for f in finals:
            out[f.name] = self._present(result.outputs[f.name], f.data_type)
        return out

    # -- helpers ------------------------------------------------------------------------

    def _baskets(self, columns: Mapping[str, Any], n: int) -> tuple[Result, Scope]:
        from conveyor.models.pmml.association import AssociationModel

        model = self.model
        assert isinstance(model, AssociationModel)
        result = model.score_baskets(model.baskets(columns, n))
        scope = Scope(result.n)
        result.outputs = model.output.compute(result, scope)
        return result, scope

    def _target_type(self) -> str:
        return self.model.target_type

    @staticmethod
    def _present(col: Array, data_type: str | None) -> Array:
        """A column as a user gets it: ints as int64 when complete, booleans as bool."""
        if col.dtype.kind == "O" or data_type is None:
            return col
        if data_type in ("date", "time", "dateTime"):
            return temporal_strings(col.astype(np.float64, copy=False), data_type)
        missing = np.isnan(col)
        if data_type == "integer" and not missing.any():
            return col.astype(np.int64)
        if data_type == "boolean" and not missing.any():
            return col.astype(bool)
        return col

    def _build_signature(self) -> Signature:
        inputs = []
        for mf in self.model.mining:
            if mf.usage not in ("active",):
                continue
            df = self.fields.get(mf.name)
            if df is None:
                raise ModelError(f"MiningField {mf.name!r} is not in the DataDictionary")
            optype = mf.optype or df.optype
            values = _public_values(df) if optype != "continuous" and df.valid else None
            inputs.append(
                Field(mf.name, _DTYPES.get(df.data_type, "object"), optional=True, values=values)
            )
        outputs = []
        model = self.model
        finals = model.output.final_fields
        if model.target_name is not None or not finals:
            outputs.append(
                Field(model.target_name or "predicted", _DTYPES.get(model.target_type, "object"))
            )
        classes = getattr(model, "classes", None) or None
        if not finals and classes and model.function == "classification":
            outputs.extend(Field(f"probability({_label(c)})", "float64") for c in classes)
        for f in finals:
            outputs.append(Field(f.name, _DTYPES.get(f.data_type or "", "object")))
        task = model.function if model.function != "associationRules" else "association"
        return Signature(
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            classes=_public_classes(classes, model.target_type)
            if classes and model.function == "classification"
            else None,
            task=task,
            extra={"pmml_version": self.version, "model": model.el.tag},
        )


def _public_values(df: DataField) -> tuple[Any, ...]:
    """A field's valid values as a user writes them: ints for integers, bools for booleans."""
    return _public_classes(df.valid, df.data_type)


def _public_classes(values: Any, data_type: str) -> tuple[Any, ...]:
    if data_type == "integer":
        return tuple(int(v) for v in values)
    if data_type == "boolean":
        return tuple(bool(v) for v in values)
    if data_type in ("double", "float"):
        return tuple(float(v) for v in values)
    return tuple(values)


def _label(value: Any) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


_SMALL_FRAME = 64


def _series(series: Any) -> Array:
    """A DataFrame column as an array: numbers stay numeric (pandas NA becomes NaN)."""
    kind = getattr(series.dtype, "kind", "O")
    if kind == "M" and getattr(series.dtype, "tz", None) is None:
        return np.asarray(series.to_numpy())  # datetime64, NaT where missing
    if kind in "biuf":
        try:
            return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            pass
    return np.asarray(series.to_numpy(dtype=object, na_value=None))


def _columns(batch: Any) -> tuple[Mapping[str, Any], int]:
    """A batch (mapping of columns, DataFrame, or list of records) -> (columns, rows)."""
    if hasattr(batch, "to_dict") and hasattr(batch, "columns") and hasattr(batch, "index"):
        n = len(batch.index)
        if n <= _SMALL_FRAME:
            # one conversion for the whole frame beats one per column for a few rows
            cells = batch.to_numpy(dtype=object, na_value=None)
            return {str(c): cells[:, j] for j, c in enumerate(batch.columns)}, n
        return {str(c): _series(batch[c]) for c in batch.columns}, n
    if isinstance(batch, Mapping):
        size: int | None = None
        cols: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, np.ndarray):
                arr = value
            elif isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                arr = np.array([value], dtype=object)  # a scalar: one row
            else:
                arr = np.asarray(list(value), dtype=object)
            if arr.ndim == 0:
                arr = arr.reshape(1)
            if size is None:
                size = len(arr)
            elif len(arr) != size:
                raise InvalidInputError(
                    f"input column {key!r} has {len(arr)} values, other columns have {size}"
                )
            cols[str(key)] = arr
        return cols, size or 0
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        records = list(batch)
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise InvalidInputError(
                    f"record {i} of the batch is a {type(r).__name__}, not a mapping"
                )
        names = list(dict.fromkeys(k for r in records for k in r))
        return {k: np.array([r.get(k) for r in records], dtype=object) for k in names}, len(records)
    raise InvalidInputError(
        f"a PMML model scores a mapping of columns, a DataFrame or a list of records, "
        f"not a {type(batch).__name__}"
    )


_ = unsupported
