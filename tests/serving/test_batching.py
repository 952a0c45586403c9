"""Adaptive batching: concurrent requests share one predict call and get their own rows back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from conveyor.serving.batching import Batcher


class GatedModel:
    """Doubles x; the first call blocks until released, so later submissions queue up."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = np.asarray(batch["x"])
        self.calls.append(len(x))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2, "row": x.copy()}


async def _submit_while_blocked(
    batcher: Batcher, model: GatedModel, payloads: list[np.ndarray]
) -> list[Any]:
    first = asyncio.ensure_future(batcher.submit({"x": np.array([100.0])}, 1))
    await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 10)
    rest = [asyncio.ensure_future(batcher.submit({"x": p}, len(p))) for p in payloads]
    await asyncio.sleep(0)  # let them queue
    model.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    await batcher.close()
    return results[1:]


def test_queued_requests_are_merged_and_split_back_in_order() -> None:
    model = GatedModel()
    seen: list[tuple[int, int]] = []
    batcher = Batcher(
        model.predict, max_rows=100, max_wait=0, on_batch=lambda r, n: seen.append((r, n))
    )
    payloads = [np.arange(n, dtype=float) + 10 * i for i, n in enumerate([1, 3, 2, 1])]
    results = asyncio.run(_submit_while_blocked(batcher, model, payloads))
    assert model.calls == [1, 7]  # the four queued requests became one call of 7 rows
    assert seen[-1] == (7, 4)
    for payload, result in zip(payloads, results, strict=True):
        np.testing.assert_array_equal(result["row"], payload)
        np.testing.assert_array_equal(result["y"], payload * 2)


def test_size_cap_splits_the_queue() -> None:
    model = GatedModel()
    batcher = Batcher(model.predict, max_rows=4, max_wait=0)
    payloads = [np.ones(3), np.ones(3), np.ones(1)]
    results = asyncio.run(_submit_while_blocked(batcher, model, payloads))
    assert model.calls == [1, 3, 4]
    assert [len(r["y"]) for r in results] == [3, 3, 1]


def test_a_bad_request_does_not_poison_its_batch_mates() -> None:
    model = GatedModel()
    batcher = Batcher(model.predict, max_rows=100, max_wait=0)
    payloads = [np.array([1.0]), np.array([-1.0, 2.0]), np.array([3.0])]
    results = asyncio.run(_submit_while_blocked(batcher, model, payloads))
    np.testing.assert_array_equal(results[0]["y"], [2.0])
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[2]["y"], [6.0])


def test_a_model_returning_the_wrong_row_count_is_an_error() -> None:
    def short(batch: dict[str, Any]) -> dict[str, Any]:
        return {"y": np.zeros(1)}

    async def go() -> None:
        batcher = Batcher(short)
        try:
            with pytest.raises(RuntimeError, match="returned 1 rows"):
                await batcher.submit({"x": np.zeros(3)}, 3)
        finally:
            await batcher.close()

    asyncio.run(go())


class ScriptedClock:
    """A clock each timed predict call advances by the next scripted duration."""

    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = durations
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the read after a call: that call took the next duration
            self.now += self.durations.pop(0)
        return self.now


def _placements(calls: int, *, wall: list[float], cpu: list[float]) -> list[bool]:
    """Run ``calls`` one-row predictions; for each, whether it ran on the event loop.

    ``wall`` scripts the durations of the calls made on the loop, ``cpu`` the
    CPU times of the calls made on the predict thread, in order.
    """
    threads: list[int] = []

    def record(batch: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return {"y": np.asarray(batch["x"]) * 2}

    batcher = Batcher(
        record, inline_below=0.0005, clock=ScriptedClock(wall), cpu_clock=ScriptedClock(cpu)
    )

    async def go() -> list[Any]:
        try:
            return [(await batcher.submit({"x": np.ones(1)}, 1))["y"] for _ in range(calls)]
        finally:
            await batcher.close()

    loop_thread = threading.get_ident()
    results = asyncio.run(go())
    assert [r.tolist() for r in results] == [[2.0]] * calls
    return [t == loop_thread for t in threads]


def test_a_model_cheap_in_cpu_runs_on_the_event_loop() -> None:
    # The thread's call took 0.1 ms of CPU (however long it waited for the GIL).
    # On the loop, one slow call (preempted, say) is not enough to leave it.
    on_loop = _placements(5, wall=[0.0001, 0.05, 0.0001, 0.0001], cpu=[0.0001])
    assert on_loop == [False, True, True, True, True]


def test_a_model_slow_on_the_loop_goes_back_to_the_thread_for_longer_each_time() -> None:
    # Cheap in CPU but slow in wall time (it waits on I/O): two slow calls in
    # a row on the loop send it back to the thread for 16 calls, then 32.
    slow = 0.05
    on_loop = _placements(2 + 2 + 16 + 2 + 32 + 1, wall=[slow] * 6, cpu=[0.0001] * (1 + 16 + 32))
    assert on_loop[:3] == [False, True, True]
    assert on_loop[3:19] == [False] * 16
    assert on_loop[19:21] == [True, True]  # tried again after the ban, slow again
    assert on_loop[21:53] == [False] * 32
    assert on_loop[53] is True


def test_a_model_expensive_in_cpu_stays_on_the_thread() -> None:
    on_loop = _placements(4, wall=[], cpu=[0.002, 0.002, 0.002, 0.002])
    assert on_loop == [False] * 4
