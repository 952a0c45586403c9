"""Link and normalisation functions shared by regression-type models."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from conveyor.models.pmml._values import Array
from conveyor.models.pmml.functions import normal_cdf

__all__ = ["INVERSE_LINKS", "simplemax", "softmax"]


def _logit(y: Array) -> Array:
    one = y.dtype.type(1)
    if y.dtype == np.float32:
        # expf rounds once from the exact value, as XGBoost's sigmoid does; NumPy's float32
        # exp may be an ulp off
        e = np.exp(-y.astype(np.float64)).astype(np.float32)
        return np.asarray(one / (one + e), dtype=np.float32)
    return np.asarray(one / (one + np.exp(-y)))


def _cloglog(y: Array) -> Array:
    return 1 - np.exp(-np.exp(y))


def _loglog(y: Array) -> Array:
    return np.exp(-np.exp(-y))


def _cauchit(y: Array) -> Array:
    return 0.5 + np.arctan(y) / math.pi


#: normalizationMethod / inverse link name -> function on scores
INVERSE_LINKS: dict[str, Callable[[Array], Array]] = {
    "none": lambda y: y,
    "identity": lambda y: y,
    "logit": _logit,
    "probit": normal_cdf,
    "cloglog": _cloglog,
    "loglog": _loglog,
    "cauchit": _cauchit,
    "exp": np.exp,
    "log": np.exp,
}


def softmax(scores: Array) -> Array:
    """Rows of scores (rows x classes) -> probabilities; stable and dtype-preserving.

    In float32 it follows XGBoost's own order: the shift by the row maximum in
    float32, each exponential rounded once from double precision (as C's expf
    and Java's (float) Math.exp are; NumPy's float32 exp may be an ulp off), the
    sum in double precision, and the division in float32.
    """
    with np.errstate(all="ignore"):
        shifted = scores - np.max(scores, axis=1, keepdims=True)
        if scores.dtype == np.float32:
            e = np.exp(shifted.astype(np.float64)).astype(np.float32)
            total = np.sum(e, axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
            return np.asarray(e / total, dtype=np.float32)
        e = np.exp(shifted)
        return np.asarray(e / np.sum(e, axis=1, keepdims=True), dtype=scores.dtype)


def simplemax(scores: Array) -> Array:
    with np.errstate(all="ignore"):
        return np.asarray(scores / np.sum(scores, axis=1, keepdims=True), dtype=scores.dtype)
