"""What the router measures of each app and each revision of it, for the autoscaler (and canaries).

Per key — an app (``"iris"``), and a revision of it (``"iris@3"``) — the
meter keeps the requests in progress now and, in one-second buckets over a
sliding window, how many requests ended, how many were 5xx, and a latency
histogram whose buckets grow by 25 % (a p95 read from it is the bucket's upper
bound: at most 25 % above the true value).
The hot path costs a few dictionary hits and list increments per request;
reading merges at most ``window`` buckets.

>>> now = [100.0]
>>> meter = Meter(now=lambda: now[0])
>>> token = meter.begin("iris")
>>> meter.read("iris").ongoing
1
>>> meter.end(token, 3, 200, 0.120)
>>> reading = meter.read("iris@3", window=10)
>>> (reading.requests, reading.errors, reading.ongoing, round(reading.p95_ms))
(1, 0, 0, 132)
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Meter", "Reading"]

#: Latency bucket upper bounds in seconds: 0.5 ms growing by 25 % to ~2 min.
_BOUNDS = [0.0005 * 1.25**i for i in range(56)]
#: Seconds of one-second buckets kept per key.
HISTORY = 120


@dataclass(frozen=True)
class Reading:
    """One key's measures: now (``ongoing``) and over the window asked for."""

    ongoing: int
    requests: int
    errors: int
    #: Requests per second that ended over the window.
    rate: float
    #: 95th percentile of the response time over the window, in ms; None without requests.
    p95_ms: float | None
    #: The meter's clock when a request last began or ended there (None: never).
    last_active: float | None


@dataclass
class _Second:
    at: int
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(_BOUNDS) + 1))


@dataclass
class _Series:
    ongoing: int = 0
    last_active: float | None = None
    seconds: list[_Second] = field(default_factory=list)

    def second(self, at: int) -> _Second:
        seconds = self.seconds
        if seconds and seconds[-1].at == at:
            return seconds[-1]
        bucket = _Second(at)
        seconds.append(bucket)
        if len(seconds) > HISTORY:
            del seconds[: len(seconds) - HISTORY]
        return bucket


class Meter:
    """Counts requests at the router; :meth:`begin` and :meth:`end` bracket each one.

    ``now`` is the meter's clock (monotonic seconds; the router passes its
    event loop's time, tests a fake).
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._series: dict[str, _Series] = {}
        self._busy: dict[str, int] = {}

    def _get(self, key: str) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        return series

    def begin(self, app: str) -> str:
        """A request for ``app`` began; the token it returns goes to :meth:`end`."""
        series = self._get(app)
        series.ongoing += 1
        series.last_active = self.now()
        return app

    def end(self, app: str, revision: int, status: int, seconds: float) -> None:
        """The request :meth:`begin` counted ended with ``status`` after ``seconds``.

        ``revision`` is the revision whose instance answered (0: none did, the
        router answered itself), counted under ``app@revision`` too.
        """
        now = self.now()
        tick = int(now)
        slot = bisect.bisect_left(_BOUNDS, seconds)
        error = status >= 500
        series = self._get(app)
        series.ongoing = max(0, series.ongoing - 1)
        series.last_active = now
        for key in (app, f"{app}@{revision}") if revision else (app,):
            bucket = (series if key == app else self._get(key)).second(tick)
            bucket.requests += 1
            bucket.errors += error
            bucket.latency[slot] += 1

    def busy(self, backend: str, change: int) -> None:
        """An exchange took (+1) or let go of (-1) instance ``backend`` (its route-table key)."""
        count = self._busy.get(backend, 0) + change
        if count > 0:
            self._busy[backend] = count
        else:
            self._busy.pop(backend, None)

    def in_flight(self, backend: str) -> int:
        """Requests instance ``backend`` is answering now: a drain waits for 0."""
        return self._busy.get(backend, 0)

    def read(self, key: str, window: float = 30.0) -> Reading:
        """The measures of ``key`` (an app, or ``app@revision``) over the last ``window`` s."""
        series = self._series.get(key)
        if series is None:
            return Reading(0, 0, 0, 0.0, None, None)
        now = self.now()
        since = now - window
        requests = errors = 0
        latency = [0] * (len(_BOUNDS) + 1)
        for bucket in series.seconds:
            if bucket.at + 1 <= since:
                continue
            requests += bucket.requests
            errors += bucket.errors
            for i, count in enumerate(bucket.latency):
                if count:
                    latency[i] += count
        return Reading(
            ongoing=series.ongoing,
            requests=requests,
            errors=errors,
            rate=requests / window if window > 0 else 0.0,
            p95_ms=_quantile(latency, 0.95),
            last_active=series.last_active,
        )

    def forget(self, app: str) -> None:
        """Drop what was measured of ``app`` and its revisions (the app was deleted)."""
        for key in [k for k in self._series if k == app or k.startswith(app + "@")]:
            del self._series[key]


def _quantile(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for slot, count in enumerate(counts):
        seen += count
        if seen >= rank:
            bound = _BOUNDS[min(slot, len(_BOUNDS) - 1)]
            return bound * 1000.0
    return _BOUNDS[-1] * 1000.0  # pragma: no cover - the loop always reaches the rank
