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
requests meanwhile — unless the model is cheap (a compiled tree ensemble
scores a small batch in ~40 µs), in which case the call runs on the event
loop itself: handing it to a thread and back costs more than the call, and
under load far more, because every time NumPy gives up the GIL inside
predict, the thread waits for the busy loop to give it back (up to the
interpreter's 5 ms switch interval). So:

* The first call runs on the thread. A call on the thread is measured in
  the thread's own CPU time, which GIL waits and preemption do not inflate.
  Once that averages below ``inline_below`` seconds, calls move to the loop.
* A call on the loop is measured in wall time, which is what it holds the
  loop for. Two in a row slower than ``inline_below`` (one may just have
  been preempted) send the model back to the thread, where it then stays
  for a number of calls that doubles each time this happens (16 up to
  4,096) — so a model that waits on I/O, cheap in CPU but slow, only
  blocks the loop now and then while it is found out.

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

#: Thread calls a model sent back from the loop stays there: at first, and at most.
_FIRST_BAN = 16
_LONGEST_BAN = 4096
#: Fast calls on the loop in a row after which the ban starts again from the first length.
_FORGIVE_AFTER = 1000


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
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._predict = predict
        self.max_rows = max(1, max_rows)
        self.max_wait = max(0.0, max_wait)
        self.inline_below = inline_below
        self._clock = clock
        self._cpu_clock = cpu_clock
        #: Moving average of the CPU seconds of a predict call on the thread (unknown at first).
        self._cpu_cost = float("inf")
        #: Whether predict runs on the event loop (see the module's documentation).
        self._inline = False
        #: Calls on the loop in a row slower than ``inline_below``.
        self._strikes = 0
        #: Calls on the loop in a row faster than it.
        self._fast_calls = 0
        #: Thread calls left before the loop may be tried again, and the next such ban.
        self._banned = 0
        self._ban_length = _FIRST_BAN
        self._on_batch = on_batch
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread: predict calls never overlap, so a model needs no locking
        # and the event loop keeps parsing requests while the model computes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-predict")

    async def submit(self, columns: dict[str, Any], rows: int) -> dict[str, Any]:
        """Score one request's columns; returns this request's slice of every output."""
        return await self.submit_nowait(columns, rows)

    def submit_nowait(self, columns: dict[str, Any], rows: int) -> asyncio.Future[dict[str, Any]]:
        """Queue one request's columns; the future gets its slice of every output."""
        loop = self._loop
        if loop is None or self._task is None or self._task.done():
            self._loop = loop = asyncio.get_running_loop()
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
        if len(batch) == 1:
            _resolve(batch[0], outputs)
            return
        start = 0
        for p in batch:
            _resolve(p, {name: value[start : start + p.rows] for name, value in outputs.items()})
            start += p.rows

    async def _call(
        self, loop: asyncio.AbstractEventLoop, columns: dict[str, Any]
    ) -> dict[str, Any]:
        if self._inline:
            return self._on_loop(columns)
        outputs, cpu = await loop.run_in_executor(self._executor, self._on_thread, columns)
        cost = self._cpu_cost
        self._cpu_cost = cpu if cost == float("inf") else 0.8 * cost + 0.2 * cpu
        if self._banned:
            self._banned -= 1
        if not self._banned and self._cpu_cost < self.inline_below:
            self._inline = True
        return outputs

    def _on_thread(self, columns: dict[str, Any]) -> tuple[dict[str, Any], float]:
        start = self._cpu_clock()
        outputs = self._predict(columns)
        return outputs, self._cpu_clock() - start

    def _on_loop(self, columns: dict[str, Any]) -> dict[str, Any]:
        start = self._clock()
        try:
            return self._predict(columns)
        finally:
            if self._clock() - start < self.inline_below:
                self._strikes = 0
                self._fast_calls += 1
                if self._fast_calls >= _FORGIVE_AFTER:
                    self._ban_length = _FIRST_BAN
            else:
                self._strikes += 1
                self._fast_calls = 0
                if self._strikes >= 2:
                    self._inline = False
                    self._strikes = 0
                    self._banned = self._ban_length
                    self._ban_length = min(2 * self._ban_length, _LONGEST_BAN)

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
