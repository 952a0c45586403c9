"""Adaptive batching: concurrent requests to one model are merged into one predict call.

Requests queue up while the model is busy; when it is free, the batcher takes
everything queued (up to ``max_rows`` rows) — after waiting ``max_wait``
seconds for more if the batch is still small (default: no wait; the
requests that arrive during one predict call form the next batch) —
concatenates the columns,
calls ``predict`` once in a worker thread, and hands each request its own
slice of every output. An idle service therefore answers a lone request
without waiting, and a busy one amortises the per-call cost of the model
over many rows.

If the merged call fails, each request of the batch is scored on its own, so
a request the model rejects fails alone and never poisons its batch-mates.

Where predict runs: on the predict thread, so the event loop keeps reading
requests meanwhile — unless recent calls took less than ``inline_below``
seconds (a compiled tree ensemble scores a small batch in ~40 µs), in which
case the call runs on the event loop itself: handing it to a thread and back
costs more than the call. Every call is timed, so a model that turns slow
(bigger batches) goes back to the thread. The very first call always uses
the thread.

>>> batcher = Batcher(model.predict, max_rows=256, max_wait=0.001)   # doctest: +SKIP
>>> outputs = await batcher.submit({"x": array}, rows=1)              # doctest: +SKIP
>>> future = batcher.submit_nowait({"x": array}, rows=1)             # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher"]

Predict = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(slots=True)
class _Pending:
    columns: dict[str, Any]
    rows: int
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


class Batcher:
    """Merges concurrent submissions into batched predict calls on one thread."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_rows: int = 256,
        max_wait: float = 0.0,
        on_batch: Callable[[int, int], None] | None = None,
        inline_below: float = 0.0005,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._predict = predict
        self.max_rows = max(1, max_rows)
        self.max_wait = max(0.0, max_wait)
        self.inline_below = inline_below
        self._clock = clock
        #: Moving average of a predict call's duration in seconds (unknown at first).
        self._cost = float("inf")
        self._on_batch = on_batch
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: predict calls never overlap, so a model needs no locking
        # and the event loop keeps parsing requests while the model computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-predict")

    async def submit(self, columns: dict[str, Any], rows: int) -> dict[str, Any]:
        """Score one request's columns; returns this request's slice of every output."""
        return await self.submit_nowait(columns, rows)

    def submit_nowait(self, columns: dict[str, Any], rows: int) -> asyncio.Future[dict[str, Any]]:
        """Queue one request's columns; the future gets its slice of every output."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="conveyor-batcher")
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.append(_Pending(columns, rows, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Stop the batching task after the queue drains; the thread pool is shut down."""
        if self._task is not None:
            while self._queue:
                await asyncio.sleep(0.001)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        total = 0
        while self._queue:
            nxt = self._queue[0]
            if taken and total + nxt.rows > self.max_rows:
                break
            taken.append(self._queue.pop(0))
            total += nxt.rows
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_wait and sum(p.rows for p in self._queue) < self.max_rows:
                # Give requests that are arriving right now a moment to join.
                await asyncio.sleep(self.max_wait)
            batch = [p for p in self._take() if not p.future.done()]
            if not batch:
                continue
            await self._score(loop, batch)

    async def _score(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        rows = sum(p.rows for p in batch)
        merged = batch[0].columns if len(batch) == 1 else _concat([p.columns for p in batch])
        try:
            outputs = await self._call(loop, merged)
            _check_rows(outputs, rows)
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], exc)
                self._report(rows, 1)
                return
            # Find the culprit(s): score each request on its own.
            for p in batch:
                try:
                    single = await self._call(loop, p.columns)
                    _check_rows(single, p.rows)
                    _resolve(p, single)
                except Exception as single_exc:
                    _resolve(p, single_exc)
                self._report(p.rows, 1)
            return
        self._report(rows, len(batch))
        start = 0
        for p in batch:
            _resolve(p, {name: value[start : start + p.rows] for name, value in outputs.items()})
            start += p.rows

    async def _call(
        self, loop: asyncio.AbstractEventLoop, columns: dict[str, Any]
    ) -> dict[str, Any]:
        if self._cost < self.inline_below:
            return self._timed(columns)
        return await loop.run_in_executor(self._executor, self._timed, columns)

    def _timed(self, columns: dict[str, Any]) -> dict[str, Any]:
        start = self._clock()
        try:
            return self._predict(columns)
        finally:
            took = self._clock() - start
            cost = self._cost
            self._cost = took if cost == float("inf") else 0.8 * cost + 0.2 * took

    def _report(self, rows: int, requests: int) -> None:
        if self._on_batch is not None:
            self._on_batch(rows, requests)


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _check_rows(outputs: dict[str, Any], rows: int) -> None:
    for name, value in outputs.items():
        if len(value) != rows:
            raise RuntimeError(
                f"the model returned {len(value)} rows of {name!r} for {rows} input rows"
            )


def _resolve(p: _Pending, result: dict[str, Any] | BaseException) -> None:
    if p.future.done():  # the client gave up (timeout, disconnect)
        return
    if isinstance(result, BaseException):
        p.future.set_exception(result)
    else:
        p.future.set_result(result)
