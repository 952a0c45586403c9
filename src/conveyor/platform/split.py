"""A canary's traffic split: which revision of an app each request goes to, and how each did.

While a canary runs, the route table holds one :class:`Split` for the app:
``weight`` percent of its requests go to the new revision, the rest to the
current one. The choice is a counter, not a dice roll, so the split is exact
over every hundred requests (10 % is requests 10, 20, 30 ...):

>>> split = Split(stable=2, canary=3, weight=10)
>>> [split.choose() for _ in range(20)].count(3)
2

The router tells the split how each request ended (:meth:`Split.observe`);
the canary's watcher takes the measurements of each window
(:meth:`Split.take`) and compares the revisions' error rates and p95 latencies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.platform.routes import Backend

__all__ = ["Measure", "Split"]

#: Latencies kept per revision and window for its p95 (the most recent ones).
_KEPT = 4096


@dataclass(frozen=True)
class Measure:
    """What the router saw of one revision in one window."""

    requests: int = 0
    #: Answers with a status of 500 or more (the router's own 502/504 for its instances too).
    errors: int = 0
    #: 95th percentile of the time from request head to the last byte of the answer, in ms.
    p95_ms: float = 0.0

    @property
    def error_rate(self) -> float:
        """Errors per hundred requests (0 when there were none)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0


@dataclass
class _Window:
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_KEPT))

    def measure(self) -> Measure:
        ordered = sorted(self.latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0
        return Measure(self.requests, self.errors, p95)


class Split:
    """Weighted routing between an app's current (``stable``) and new (``canary``) revision."""

    def __init__(self, stable: int, canary: int, weight: int) -> None:
        self.stable = stable
        self.canary = canary
        self.weight = weight
        self._count = 0
        self._turns: dict[int, int] = {}
        self._windows: dict[int, _Window] = {}

    @property
    def weight(self) -> int:
        """Percent of requests sent to the canary (0-100)."""
        return self._weight

    @weight.setter
    def weight(self, value: int) -> None:
        if not 0 <= value <= 100:
            raise ValueError(f"a canary's weight is a percentage (0-100), not {value}")
        self._weight = value

    def choose(self) -> int:
        """The revision the next request should go to."""
        before = self._count * self._weight // 100
        self._count += 1
        return self.canary if self._count * self._weight // 100 > before else self.stable

    def order(self, ready: list[Backend]) -> list[Backend]:
        """``ready`` in the order to try them: the chosen revision's in turn, then the other's.

        When the chosen revision has no ready instance the other one answers,
        so a canary that is starting or draining never costs a request.
        """
        revision = self.choose()
        group = [b for b in ready if b.revision == revision]
        rest = [b for b in ready if b.revision != revision]
        if not group:
            return rest
        turn = self._turns.get(revision, 0) % len(group)
        self._turns[revision] = turn + 1
        return group[turn:] + group[:turn] + rest

    def observe(self, revision: int, status: int, ms: float) -> None:
        """Count one answered request of ``revision`` (the router calls this)."""
        window = self._windows.get(revision)
        if window is None:
            window = self._windows[revision] = _Window()
        window.requests += 1
        if status >= 500:
            window.errors += 1
        window.latencies.append(ms)

    def take(self) -> dict[int, Measure]:
        """The measurements since the last call, by revision; the next window starts empty."""
        windows, self._windows = self._windows, {}
        return {revision: w.measure() for revision, w in windows.items()}
