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
    """Rows of scores (rows x classes) -> probabilities; stable and dtype-preserving."""
    with np.errstate(all="ignore"):
        shifted = scores - np.max(scores, axis=1, keepdims=True)
        e = np.exp(shifted)
        return np.asarray(e / np.sum(e, axis=1, keepdims=True), dtype=scores.dtype)


def simplemax(scores: Array) -> Array:
    with np.errstate(all="ignore"):
        return np.asarray(scores / np.sum(scores, axis=1, keepdims=True), dtype=scores.dtype)
