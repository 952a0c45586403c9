"""Autoscaling at work: every second, measure each autoscaled app and let its policy decide.

:class:`Autoscaling` is the loop beside the controller: for each started app
whose revision has an ``autoscaling`` policy it builds a
:class:`~.autoscaler.Sample` from the router's :class:`~.router.Meter`
(ongoing requests, throughput, p95) and the target's view of the instances
(CPU, memory, crashes), asks that app's :class:`~.autoscaler.Autoscaler`, and
carries a decision out through :meth:`.Controller.autoscale` — recorded as a
``scaled`` event with its reason, then done by the target's ``scale`` (which
drains an instance before stopping it).

During a canary the app is measured and decided as one (both revisions'
requests and instances), and the decision is shared by the canary's weight
(:meth:`.Canaries.scale`), never below one instance of each revision. Its crash
backoff is per revision (:meth:`.Canaries.hold`): a crash-looping canary keeps
the instances it has while the current revision still scales by its share.

An app scaled to zero is woken by the router: :meth:`Autoscaling.wake` starts
one instance (once, however many requests are held) and tells the router when
it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.platform.autoscaler import Autoscaler, Decision, Sample
from conveyor.platform.canary import FLOOR
from conveyor.platform.clock import Clock
from conveyor.platform.errors import PlatformError

if TYPE_CHECKING:
    from conveyor.platform.controller import Controller
    from conveyor.platform.policy import AutoscalingSpec
    from conveyor.platform.router import Meter
    from conveyor.platform.spec import AppSpec
    from conveyor.platform.target import InstanceStatus

__all__ = ["Autoscaling", "LagReader"]

#: Messages waiting in the input of a stream app (its name and spec); None if unknown.
LagReader = Callable[[str, "AppSpec"], "int | None"]

log = logging.getLogger("conveyor.platform.autoscaling")


@dataclass
class _Watched:
    """One autoscaled app as the loop follows it."""

    revision: int
    spec: AppSpec
    scaler: Autoscaler
    #: Clock time the loop began to follow this revision (idle time counts from there).
    since: float
    memory_limit: int | None
    #: CPU seconds and clock time per pid at the previous tick.
    cpu: dict[int, tuple[float, float]]


class Autoscaling:
    """Polls ``meter`` and the controller's target every ``interval`` seconds of ``clock``."""

    def __init__(
        self,
        controller: Controller,
        meter: Meter,
        clock: Clock,
        *,
        interval: float = 1.0,
        window: float = 30.0,
    ) -> None:
        self.controller = controller
        self.meter = meter
        self.clock = clock
        self.interval = interval
        self.window = window
        self._watched: dict[str, _Watched] = {}
        self._waking: dict[str, asyncio.Task[bool]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Reads a stream app's consumer lag (the stream deployer sets it; binders are theirs).
        self.lag: LagReader | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="autoscaling")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._waking.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # one bad app or a registry hiccup must not end autoscaling
                log.exception("autoscaling tick failed")

    async def tick(self) -> None:
        """Measure every autoscaled app once and carry out what its policy decides."""
        controller = self.controller
        seen: set[str] = set()
        for app in controller.state.apps():
            if app.state != "started" or not app.revision:
                continue
            watched = self._follow(app.name, app.revision)
            if watched is None:
                continue
            seen.add(app.name)
            if app.name in self._waking:
                continue
            sample = self.sample(app.name, app.instances, watched)
            if controller.canaries.get(app.name) is not None:
                # One count for both revisions, from the whole app's load; the canary shares it.
                # The crash backoff is per revision: a crash-looping side is held (by the
                # canary's split), the other still grows; only both held stop the app growing.
                both = await controller.canaries.hold(app.name)
                sample = dataclasses.replace(sample, floor=FLOOR, backoff=both)
            if watched.scaler.policy.target_lag is not None and self.lag is not None:
                lag = await asyncio.to_thread(self.lag, app.name, watched.spec)
                sample = dataclasses.replace(sample, lag=None if lag is None else float(lag))
            decision = watched.scaler.decide(sample)
            if decision is not None:
                await self._carry_out(app.name, decision)
        for gone in set(self._watched) - seen:
            del self._watched[gone]

    def _follow(self, name: str, revision: int) -> _Watched | None:
        watched = self._watched.get(name)
        if watched is not None and watched.revision == revision:
            return watched
        spec = self.controller.spec(self.controller.state.revision(name, revision))
        if spec.autoscaling is None:
            self._watched.pop(name, None)
            return None
        watched = _Watched(
            revision, spec, self._scaler(spec.autoscaling), self.clock.now(), spec.memory, {}
        )
        self._watched[name] = watched
        return watched

    def _scaler(self, policy: AutoscalingSpec) -> Autoscaler:
        return Autoscaler(policy, self.clock)

    def sample(self, name: str, instances: int, watched: _Watched) -> Sample:
        """What is measured of app ``name`` now."""
        reading = self.meter.read(name, self.window)
        now = self.clock.now()
        policy = watched.scaler.policy
        usage = any(rule.metric in ("cpu", "memory") for rule in policy.rules)
        statuses = self.controller.target.status(name, usage=usage)
        last = reading.last_active
        idle_from = watched.since if last is None else max(last, watched.since)
        return Sample(
            instances=instances,
            ongoing=float(reading.ongoing),
            throughput=reading.rate,
            p95_ms=reading.p95_ms,
            cpu=_cpu(statuses, watched, now) if usage else None,
            memory=_memory(statuses, watched.memory_limit) if usage else None,
            idle_for=max(0.0, now - idle_from),
            backoff=any(s.state == "CRASHED" for s in statuses),
        )

    async def _carry_out(self, name: str, decision: Decision) -> bool:
        try:
            await self.controller.autoscale(name, decision)
        except PlatformError as error:
            log.warning("autoscaling %s: %s", name, error)
            return False
        return True

    # -- scale from zero ------------------------------------------------------------

    def wake(self, app: str) -> Awaitable[bool] | None:
        """A request for ``app`` found no instance: start one if it was scaled to zero.

        Returns what to await (True once an instance is ready), or None when the
        app is not one that scales from zero (the router answers 503 at once).
        """
        waking = self._waking.get(app)
        if waking is not None:
            return waking
        watched = self._watched.get(app)
        if watched is None or watched.scaler.policy.min_instances > 0:
            return None
        task = asyncio.get_running_loop().create_task(self._wake(app, watched))
        self._waking[app] = task
        task.add_done_callback(lambda _t: self._waking.pop(app, None))
        return task

    async def _wake(self, app: str, watched: _Watched) -> bool:
        record = self.controller.state.find_app(app)
        if record is None or record.state != "started":
            return False
        if record.instances > 0:
            return bool(self.controller.target.status(app))  # starting already (or crashing)
        return await self._carry_out(app, watched.scaler.woken())


def _cpu(statuses: list[InstanceStatus], watched: _Watched, now: float) -> float | None:
    """Percent of one core per instance since the previous tick, averaged."""
    shares: list[float] = []
    seen: dict[int, tuple[float, float]] = {}
    for status in statuses:
        if status.pid is None or status.cpu is None:
            continue
        seen[status.pid] = (status.cpu, now)
        before = watched.cpu.get(status.pid)
        if before is not None and now > before[1]:
            shares.append(100.0 * (status.cpu - before[0]) / (now - before[1]))
    watched.cpu = seen
    return sum(shares) / len(shares) if shares else None


def _memory(statuses: list[InstanceStatus], limit: int | None) -> float | None:
    used = [s.memory for s in statuses if s.memory is not None]
    if not limit or not used:
        return None
    return 100.0 * sum(used) / len(used) / limit
