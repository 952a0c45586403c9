"""SupportVectorMachineModel: one kernel matrix per batch, every machine a matrix product.

The kernel (linear, polynomial, radial basis, sigmoid) is evaluated between
the batch and all support vectors of the VectorDictionary once; each
SupportVectorMachine then sums its coefficients over its vectors. Regression
returns the single machine's value. Classification is OneAgainstAll (the
machine with the lowest value wins, or the highest with maxWins) or
OneAgainstOne (machines vote for targetCategory below the threshold, else
for alternateTargetCategory); probabilities are the share of votes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ModelError
from conveyor.models.pmml._values import NO_MATCH, Array, cast, coerce, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.core import CompiledModel, Context, Result, classify
from conveyor.models.pmml.predicates import parse_array
from conveyor.models.pmml.scope import Scope

__all__ = ["SupportVectorMachineModel"]

_KERNELS = (
    "LinearKernelType",
    "PolynomialKernelType",
    "RadialBasisKernelType",
    "SigmoidKernelType",
)


def _vector(el: Element, width: int) -> list[float]:
    dense = el.find("Array")
    if dense is not None:
        return [float(v) for v in parse_array(dense)]
    sparse = el.find("REAL-SparseArray") or el.find("INT-SparseArray")
    if sparse is None:
        raise unsupported(el, "a VectorInstance without an Array or sparse array")
    out = [float(sparse.get("defaultValue", "0"))] * int(sparse.get("n", str(width)))
    indices_el, entries_el = (
        sparse.find("Indices"),
        sparse.find("REAL-Entries") or sparse.find("INT-Entries"),
    )
    indices = [int(i) for i in indices_el.text.split()] if indices_el is not None else []
    entries = [float(v) for v in entries_el.text.split()] if entries_el is not None else []
    for i, v in zip(indices, entries, strict=True):
        out[i - 1] = v
    return out


class SupportVectorMachineModel(CompiledModel):
    """Kernel SVMs for classification and regression."""

    def __init__(self, el: Element, ctx: Context) -> None:
        super().__init__(el, ctx)
        kernel = next((c for c in el.children if c.tag in _KERNELS), None)
        if kernel is None:
            raise unsupported(el, "an SVM without a supported kernel")
        self.kernel = kernel.tag
        self.gamma = float(kernel.get("gamma", "1"))
        self.coef0 = float(kernel.get("coef0", "1"))
        self.degree = float(kernel.get("degree", "1"))
        self.representation = el.get("svmRepresentation", "SupportVectors")
        self.method = el.get("classificationMethod", "OneAgainstAll")
        self.max_wins = el.get("maxWins", "false") == "true"
        self.threshold = float(el.get("threshold", "0"))
        vd = el.find("VectorDictionary")
        if vd is None:
            raise ModelError(f"{el.where}: <SupportVectorMachineModel> needs a VectorDictionary")
        vf = vd.find("VectorFields")
        if vf is None:
            raise ModelError(f"{vd.where}: <VectorDictionary> needs VectorFields")
        # a vector entry is a field's number, or (PMML 4.4) an indicator of one category
        self.columns: list[tuple[str, str | None, float]] = []
        for c in vf.children:
            if c.tag == "FieldRef":
                self.columns.append((c.require("field"), None, 1.0))
            elif c.tag == "CategoricalPredictor":
                coefficient = float(c.get("coefficient", "1"))
                self.columns.append((c.require("name"), c.require("value"), coefficient))
            else:
                raise unsupported(c, f"<{c.tag}> in VectorFields")
        self.fields = [name for name, _, _ in self.columns]
        ids, rows = [], []
        for vi in vd.findall("VectorInstance"):
            ids.append(vi.require("id"))
            rows.append(_vector(vi, len(self.fields)))
        self.vectors = np.array(rows).reshape(len(rows), len(self.fields))
        self._v_sq = (self.vectors * self.vectors).sum(axis=1)
        position = {vid: i for i, vid in enumerate(ids)}
        # (target, alternate, vector indices, coefficients, intercept, threshold)
        self.machines: list[tuple[str | None, str | None, Array, Array, float, float]] = []
        for m in el.findall("SupportVectorMachine"):
            coefs_el = m.find("Coefficients")
            if coefs_el is None:
                raise ModelError(f"{m.where}: <SupportVectorMachine> needs Coefficients")
            coefs = np.array([float(c.get("value", "0")) for c in coefs_el.findall("Coefficient")])
            intercept = float(coefs_el.get("absoluteValue", "0"))
            if self.representation == "Coefficients":
                idx = np.arange(len(self.fields))
            else:
                svs = m.find("SupportVectors")
                sv_ids = (
                    [s.require("vectorId") for s in svs.findall("SupportVector")] if svs else []
                )
                missing = [v for v in sv_ids if v not in position]
                if missing:
                    raise ModelError(
                        f"{m.where}: support vector {missing[0]!r} is not in the dictionary"
                    )
                idx = np.array([position[v] for v in sv_ids], dtype=np.intp)
            if len(idx) != len(coefs):
                raise ModelError(f"{m.where}: {len(idx)} vectors but {len(coefs)} coefficients")
            threshold = float(m.get("threshold", str(self.threshold)))
            target, alternate = m.get("targetCategory"), m.get("alternateTargetCategory")
            self.machines.append((target, alternate, idx, coefs, intercept, threshold))
        if not self.machines:
            raise ModelError(f"{el.where}: <SupportVectorMachineModel> has no machines")
        if self.function == "classification":
            declared = self.declared_classes()
            seen: list[Any] = []
            for machine in self.machines:
                for category in machine[:2]:
                    if isinstance(category, str) and self.label(category) not in seen:
                        seen.append(self.label(category))
            self.classes: list[Any] = [c for c in declared if c in seen] if declared else seen

    def kernel_matrix(self, x: Array) -> Array:
        v = self.vectors
        with np.errstate(all="ignore"):
            if self.kernel == "RadialBasisKernelType":
                # |x - v|^2 expanded, so the batch costs one BLAS product
                sq = (x * x).sum(axis=1)[:, None] + self._v_sq[None, :] - 2.0 * (x @ v.T)
                return np.asarray(np.exp(-self.gamma * np.maximum(sq, 0.0)))
            dot = x @ v.T
            if self.kernel == "LinearKernelType":
                return np.asarray(dot)
            if self.kernel == "PolynomialKernelType":
                return np.asarray(np.power(self.gamma * dot + self.coef0, self.degree))
            return np.asarray(np.tanh(self.gamma * dot + self.coef0))

    def _column(self, scope: Scope, name: str, category: str | None, coefficient: float) -> Array:
        col = scope.get(name)
        if category is None:
            return cast(col, "double").astype(np.float64)
        value = coerce(category, col.dtype)
        hit = np.zeros(scope.n) if value is NO_MATCH else (col == value).astype(np.float64)
        return np.where(is_missing(col), np.nan, coefficient * hit)

    def _values(self, scope: Scope) -> list[Array]:
        x = np.column_stack([self._column(scope, *c) for c in self.columns]).reshape(
            scope.n, len(self.columns)
        )
        if self.representation == "Coefficients":
            return [x @ coefs + b for _, _, _, coefs, b, _ in self.machines]
        k = self.kernel_matrix(x)
        return [k[:, idx] @ coefs + b for _, _, idx, coefs, b, _ in self.machines]

    def score(self, scope: Scope) -> Result:
        values = self._values(scope)
        if self.function == "regression":
            return Result(value=values[0])
        n = scope.n
        classes = self.classes
        missing = np.isnan(np.column_stack(values)).any(axis=1) if values else np.zeros(n, bool)
        if self.method == "OneAgainstOne" or (len(self.machines) == 1 and self.machines[0][1]):
            votes = {c: np.zeros(n) for c in classes}
            for (target, alternate, _, _, _, threshold), f in zip(
                self.machines, values, strict=True
            ):
                if target is None or alternate is None:
                    raise ModelError(f"{self.el.where}: OneAgainstOne machines need two categories")
                first = f > threshold if self.max_wins else f < threshold
                votes[self.label(target)] += first
                votes[self.label(alternate)] += ~first
            total = sum(votes.values())
            probabilities = {c: np.where(missing, np.nan, v / total) for c, v in votes.items()}
        else:
            scores = {self.label(m[0] or ""): f for m, f in zip(self.machines, values, strict=True)}
            stacked = np.column_stack([scores[c] for c in classes])
            best = np.argmax(stacked, axis=1) if self.max_wins else np.argmin(stacked, axis=1)
            probabilities = {
                c: np.where(missing, np.nan, (best == j).astype(float))
                for j, c in enumerate(classes)
            }
        value = classify(probabilities, classes, self.target_type)
        return Result(value=value, classes=classes, probabilities=probabilities)
