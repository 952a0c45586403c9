"""The prediction log: a sample of requests' inputs and outputs, sent to a stream destination.

Each sampled answer becomes one record — request id, model name, digest and
run, app and revision, time, and the request's input columns and output
columns — queued without blocking and published in batches from a thread of
its own, so the broker's latency never reaches the scoring hot path. A full
queue drops records (and counts them) rather than slow the service::

    {"request_id": "5f0c…", "model": "churn", "digest": "blake3:…", "run": "3f2a…",
     "app": "churn", "revision": 3, "at": 1733412345.6,
     "inputs": {"age": [41], "income": [52000.0]}, "outputs": {"label": ["stays"]}}

The publisher comes from the layer that knows the binders (``conveyor
serve`` builds one per worker, after the fork); this module knows none.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PredictionLog", "PredictionLogOptions"]

log = logging.getLogger("conveyor.serving.predictions")

#: Publishes one batch of records (a list of JSON objects); may block on the broker.
Publish = Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True)
class PredictionLogOptions:
    #: Opens the publisher (called in each serving process, after any fork).
    open: Callable[[], tuple[Publish, Callable[[], None]]]
    #: Share of scored requests logged, above 0 and at most 1.
    sample: float = 1.0
    #: Where it goes, as shown in messages (``embedded/predictions``).
    where: str = ""
    #: Records waiting beyond this are dropped.
    max_queued: int = 10_000


class PredictionLog:
    """Samples answers and publishes them in the background."""

    def __init__(self, options: PredictionLogOptions, context: Mapping[str, Any]) -> None:
        self.options = options
        self.context = dict(context)
        self.dropped = 0
        self._random = random.random
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(options.max_queued)
        self._thread = threading.Thread(target=self._send, name="conveyor-predictions", daemon=True)
        self._thread.start()

    def wants(self) -> bool:
        """Whether to log the next answer (the sample's coin toss)."""
        return self.options.sample >= 1.0 or self._random() < self.options.sample

    def record(
        self, request_id: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> None:
        entry = {
            "request_id": request_id,
            **self.context,
            "at": time.time(),
            "inputs": {k: _values(v) for k, v in inputs.items()},
            "outputs": {k: _values(v) for k, v in outputs.items()},
        }
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued (waiting at most ``timeout`` seconds), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _send(self) -> None:
        try:
            publish, close = self.options.open()
        except Exception as exc:
            log.error("the prediction log to %s cannot start: %s", self.options.where, exc)
            return
        try:
            done = False
            while not done:
                batch = [self._queue.get()]
                while len(batch) < 500:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                done = batch[-1] is None
                records = [r for r in batch if r is not None]
                if records:
                    try:
                        publish(records)
                    except Exception as exc:
                        self.dropped += len(records)
                        log.warning("prediction log to %s: %s", self.options.where, exc)
        finally:
            with contextlib.suppress(Exception):
                close()


def _values(array: Any) -> Any:
    """A column as JSON values (NumPy arrays as lists)."""
    tolist = getattr(array, "tolist", None)
    return tolist() if tolist is not None else array
