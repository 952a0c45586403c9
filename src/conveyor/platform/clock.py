"""Time as an injected object, so backoff and health logic can run on a fake clock.

The supervisor never calls :func:`time.monotonic` or :func:`asyncio.sleep`
itself: it asks its clock. :class:`FakeClock` lets a test jump thirty seconds
ahead without waiting for them (the idea of honcho's ``FakeClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

__all__ = ["Clock", "FakeClock", "SystemClock", "race_deadline"]

T = TypeVar("T")


class Clock(Protocol):
    """What the supervisor needs of time."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps shown to people."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real clock: the event loop's sleep and the monotonic timer."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers wake in deadline order, each seeing ``now()`` equal to its own
    deadline, and the event loop runs what they unblocked before the next one
    wakes, so a scripted history plays out as it would in real time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many coroutines are waiting on this clock right now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes, or None if nobody sleeps."""
        live = [d for d, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline falls inside."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():  # its sleeper was cancelled
                continue
            self._now = max(self._now, deadline)
            future.set_result(None)
            await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 50) -> None:
    """Let the event loop run everything that is ready (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def race_deadline(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T | None:
    """Await ``awaitable``, or give up (cancelling it) after ``seconds`` on ``clock``.

    Returns None on timeout, so callers can tell "no answer in time" apart from
    an answer without catching exceptions.
    """
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    if work in done:
        return work.result()
    work.cancel()
    # The abandoned work's outcome no longer matters.
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await work
    return None
