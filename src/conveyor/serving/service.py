"""One served model: its signature, batcher and metrics, and how outputs become JSON.

Protocol handlers turn a payload into typed columns (``ColumnBuilder``) and
return a :class:`Scoring`: the columns, and how to shape their outputs the
protocol's way. The app scores the columns (:meth:`ServedModel.submit`)
and answers with the shaped outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from conveyor.config import SERVE_PORT
from conveyor.models.base import Field, Signature
from conveyor.serving.batching import Batcher
from conveyor.serving.columns import ColumnBuilder
from conveyor.serving.errors import RequestError
from conveyor.serving.http import Response
from conveyor.serving.metrics import ServiceMetrics
from conveyor.serving.predictions import PredictionLogOptions
from conveyor.serving.resolve import ResolvedModel

__all__ = ["RequestLogOptions", "Scoring", "ServeOptions", "ServedModel"]

_PRIMARY = ("label", "prediction", "cluster")


@dataclass(frozen=True)
class RequestLogOptions:
    """Where and how much of the request log a serving process writes (see conveyor lineage)."""

    folder: Path
    #: Share of scored requests recorded, above 0 and at most 1.
    sample: float = 1.0
    #: Seconds a log file is kept.
    retention: float = 7 * 86400.0
    #: The app and revision served, when the platform started this process.
    app: str | None = None
    revision: int | None = None


@dataclass(frozen=True)
class ServeOptions:
    """How the service behaves; every field has a command-line flag on ``conveyor serve``."""

    host: str = "127.0.0.1"
    port: int = SERVE_PORT
    workers: int = 1
    #: Largest request body accepted, in bytes (413 beyond).
    max_body: int = 16 * 1024 * 1024
    #: Seconds a request may take from its first byte to its answer (504 beyond).
    timeout: float = 30.0
    #: Most rows merged into one predict call.
    batch_max_rows: int = 256
    #: Seconds the batcher waits for more requests before scoring a small batch. The
    #: default adds no wait: requests that arrive while the model computes form the
    #: next batch, which measured as fast as a 0.5 ms wait and with a lower p99.
    batch_wait: float = 0.0
    #: Seconds an idle keep-alive connection stays open.
    keep_alive: float = 5.0
    #: Seconds given to in-flight requests when shutting down.
    graceful_timeout: float = 30.0
    #: Refuse fields the model does not take, instead of leaving them out (and saying so
    #: in the ``x-ignored-fields`` header and the ``conveyor_ignored_fields`` counter).
    strict_inputs: bool = False
    #: Record which model answered each (sampled) request id (``--request-log``); None: off.
    request_log: RequestLogOptions | None = None
    #: Send a sample of inputs and outputs to a stream destination (``--prediction-log``).
    prediction_log: PredictionLogOptions | None = None


@dataclass
class ServedModel:
    """A resolved model wired to a batcher and metrics."""

    resolved: ResolvedModel
    options: ServeOptions
    metrics: ServiceMetrics
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        name = self.resolved.name
        rows_hist = self.metrics.batch_rows.labels(name)
        requests_hist = self.metrics.batch_requests.labels(name)

        def on_batch(rows: int, requests: int) -> None:
            rows_hist.observe(rows)
            requests_hist.observe(requests)

        model = self.resolved.model
        # A format may offer a faster entry point for batches this service has
        # already validated against the signature (see SklearnModel.predict_validated).
        predict = getattr(model, "predict_validated", model.predict)
        self.batcher = Batcher(
            predict,
            max_rows=self.options.batch_max_rows,
            max_wait=self.options.batch_wait,
            on_batch=on_batch,
        )

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def signature(self) -> Signature:
        return self.resolved.model.signature

    @cached_property
    def output_names(self) -> list[str]:
        return [f.name for f in self.signature.outputs]

    @cached_property
    def primary_output(self) -> str | None:
        names = self.output_names
        for candidate in _PRIMARY:
            if candidate in names:
                return candidate
        return names[0] if names else None

    @cached_property
    def _input_fields(self) -> dict[str, Field]:
        return {f.name: f for f in self.signature.inputs}

    def builder(self) -> ColumnBuilder:
        return ColumnBuilder(self.signature, self._input_fields, strict=self.options.strict_inputs)

    @cached_property
    def _output_dtypes(self) -> dict[str, Any]:
        """The NumPy dtype each numeric output is declared with in the signature."""
        import numpy as np

        return {
            f.name: np.dtype(f.dtype)
            for f in self.signature.outputs
            if f.dtype.startswith(("int", "uint", "float"))
        }

    def submit(self, columns: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Queue ``columns`` for scoring, batched with concurrent requests; see :meth:`outputs`."""
        rows = len(next(iter(columns.values()))) if columns else 0
        return self.batcher.submit_nowait(columns, rows)

    def outputs(self, scored: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        """The outputs of a finished :meth:`submit` as arrays; a RequestError if scoring failed."""
        import numpy as np

        exc = scored.exception()
        if exc is None:
            # Formats may answer lists or pandas objects; protocols expect arrays. Numbers
            # take the dtype the metadata declares (KMeans answers int32 where it says int64).
            declared = self._output_dtypes
            out: dict[str, Any] = {}
            for name, value in scored.result().items():
                array = np.asarray(value)
                dtype = declared.get(name)
                if (
                    dtype is not None
                    and array.dtype != dtype
                    and np.can_cast(array.dtype, dtype, casting="same_kind")
                ):
                    array = array.astype(dtype)
                out[name] = array
            return out
        if isinstance(exc, (ValueError, TypeError)):
            # The inputs matched the signature but the model refused them
            # (an unseen category, say): the request is at fault, not the server.
            raise RequestError(
                f"the model rejected the input: {exc}", status=422, kind="model_rejected"
            ) from exc
        raise RequestError(
            f"the model failed: {type(exc).__name__}: {exc}", status=500, kind="model_failed"
        ) from exc


@dataclass(slots=True)
class Scoring:
    """A valid scoring request: the columns to score, and how to answer with their outputs."""

    columns: dict[str, Any]
    answer: Callable[[dict[str, Any]], Response]


def column_values(array: Any) -> Any:
    """A NumPy array in a form orjson writes directly (text arrays become lists)."""
    if getattr(array, "dtype", None) is not None and array.dtype.kind in "OUS":
        return array.tolist()
    return array


def row_values(array: Any) -> list[Any]:
    """Per-row Python values of an output array."""
    values: list[Any] = array.tolist()
    return values
