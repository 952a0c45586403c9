"""Canary releases: a new revision beside the current one, sent a share of the requests.

``conveyor push --canary 10`` stages a revision as a push does, then starts
its instances *beside* the running revision's and sends it 10 % of the
requests (:mod:`.split`). From there::

    canary ──weight──► canary (another share)
       ├──promote────► the new revision takes every request; the old one drains and stops
       ├──abort──────► the new revision drains and stops; the old one never stopped serving
       └──watcher────► promote after a healthy period, or roll back when the new revision's
                       error rate or p95 latency is worse than the current one's

The watcher judges one window at a time (``window`` seconds on the injected
:class:`~.clock.Clock`): both revisions' measurements come from the router
over the same window, so a burst of bad traffic hurts both alike. Every
decision is an event (``canary-started``, ``canary-weight``,
``canary-promoted``, ``canary-aborted``, ``canary-rolled-back``) with its
reason, which ``conveyor events``, ``conveyor app`` and ``conveyor revisions``
show. A canary lives in the platform's memory: a platform that restarts brings
back the current revision only, and records that the canary was aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFoundError
from conveyor.platform.errors import DeployError, PlatformError
from conveyor.platform.spec import AppSpec, CanaryPolicy
from conveyor.platform.split import Measure

if TYPE_CHECKING:
    from conveyor.platform.clock import Clock
    from conveyor.platform.controller import Controller, Deployment
    from conveyor.platform.target import Progress
    from conveyor.store.apps import RevisionRecord

__all__ = ["Canaries", "CanaryPolicy", "CanaryRun", "verdict"]

log = logging.getLogger("conveyor.platform.canary")

#: A p95 this much slower (ms) than the current revision's is never noise, whatever the ratio.
LATENCY_SLACK_MS = 10.0
#: Event kinds that end a canary.
ENDINGS = ("canary-promoted", "canary-aborted", "canary-rolled-back")


def verdict(policy: CanaryPolicy, current: Measure, new: Measure) -> str | None:
    """Why the new revision did worse than the current one in a window, or None.

    >>> policy = CanaryPolicy()
    >>> verdict(policy, Measure(900, 0, 12.0), Measure(100, 50, 11.0))
    'error rate 50.0% against 0.0% of the current revision (more than 5 points worse)'
    >>> verdict(policy, Measure(900, 0, 12.0), Measure(100, 0, 13.0)) is None
    True
    """
    if new.requests < policy.min_requests:
        return None
    if new.error_rate > current.error_rate + policy.max_error_rate:
        return (
            f"error rate {new.error_rate:.1f}% against {current.error_rate:.1f}% of the current "
            f"revision (more than {policy.max_error_rate:g} points worse)"
        )
    if current.requests and new.p95_ms > max(
        policy.max_p95_ratio * current.p95_ms, current.p95_ms + LATENCY_SLACK_MS
    ):
        return (
            f"p95 latency {new.p95_ms:.0f} ms against {current.p95_ms:.0f} ms of the current "
            f"revision (more than {policy.max_p95_ratio:g} times)"
        )
    return None


def merge(a: Measure, b: Measure) -> Measure:
    """Two windows as one: counts add up; the p95 is their average weighted by requests.

    >>> merge(Measure(10, 1, 20.0), Measure(30, 0, 40.0))
    Measure(requests=40, errors=1, p95_ms=35.0)
    """
    requests = a.requests + b.requests
    if not requests:
        return Measure()
    p95 = (a.p95_ms * a.requests + b.p95_ms * b.requests) / requests
    return Measure(requests, a.errors + b.errors, p95)


@dataclass
class CanaryRun:
    """One canary in progress and what the watcher has seen of it."""

    app: str
    stable: int
    canary: int
    instances: int
    weight: int
    policy: CanaryPolicy
    #: When it started, on the watcher's clock and on the wall.
    started: float
    started_at: float
    #: Requests and errors of each revision over the judged windows.
    totals: dict[int, list[int]] = field(default_factory=dict)
    last: Mapping[int, Measure] = field(default_factory=dict)
    #: Requests of the new revision in windows large enough to be judged (and found healthy).
    judged: int = 0
    #: Windows too small to judge, carried into the next: (current, new) so far.
    pending: tuple[Measure, Measure] = (Measure(), Measure())
    task: asyncio.Task[None] | None = None

    def step(self, window: Mapping[int, Measure], now: float) -> tuple[str, str] | None:
        """Judge one window: ("rollback" | "promote", why), or None to keep going."""
        self.last = dict(window)
        current, new = window.get(self.stable, Measure()), window.get(self.canary, Measure())
        for revision, measure in ((self.stable, current), (self.canary, new)):
            total = self.totals.setdefault(revision, [0, 0])
            total[0] += measure.requests
            total[1] += measure.errors
        policy = self.policy
        # A window in which the new revision served too few requests joins the next one, so
        # a canary with little traffic is still judged, on a longer window.
        current, new = (merge(a, b) for a, b in zip(self.pending, (current, new), strict=True))
        if new.requests < policy.min_requests:
            self.pending = (current, new)
        else:
            self.pending = (Measure(), Measure())
            reason = verdict(policy, current, new)
            if reason is not None:
                return ("rollback", reason) if policy.rollback else None
            self.judged += new.requests
        due = policy.promote_after is not None and now - self.started >= policy.promote_after
        if due and self.judged and not self.pending[1].requests:  # nothing left unjudged
            served, errors = self.totals[self.canary]
            return (
                "promote",
                f"healthy for {policy.promote_after:g} s ({served} requests, {errors} errors)",
            )
        return None

    def view(self) -> dict[str, Any]:
        """The canary as ``conveyor app`` shows it."""
        return {
            "stable": self.stable,
            "canary": self.canary,
            "weight": self.weight,
            "started_at": self.started_at,
            "policy": self.policy.to_json(),
            "totals": {str(r): {"requests": t[0], "errors": t[1]} for r, t in self.totals.items()},
            "last_window": {
                str(r): {"requests": m.requests, "errors": m.errors, "p95_ms": m.p95_ms}
                for r, m in self.last.items()
            },
        }


class Canaries:
    """The controller's canaries, one per app at most; every method on the platform's loop."""

    def __init__(self, controller: Controller, clock: Clock) -> None:
        self.controller = controller
        self.clock = clock
        self.runs: dict[str, CanaryRun] = {}

    def get(self, name: str) -> CanaryRun | None:
        return self.runs.get(name)

    def refuse_running(self, name: str, what: str) -> None:
        """Raise if ``name`` has a canary in progress, which ``what`` would cut short."""
        run = self.runs.get(name)
        if run is not None:
            raise PlatformError(
                f"app {name!r} has a canary running (revision {run.canary} gets "
                f"{run.weight} %, revision {run.stable} the rest); {what} waits until it ends",
                hint=f"End it first: conveyor canary {name} promote (or abort).",
            )

    def policy_for(self, spec: AppSpec, given: CanaryPolicy | None) -> CanaryPolicy | None:
        """The canary a push of ``spec`` starts: ``given``, or the manifest's for a running app."""
        if given is not None or spec.canary is None:
            return given
        app = self.controller.state.find_app(spec.name)
        running = app is not None and app.state == "started" and app.revision > 0
        return spec.canary if running else None

    def check_start(self, spec: AppSpec) -> None:
        """Refuse a canary that cannot run, before anything is staged."""
        name = spec.name
        self.refuse_running(name, "a second canary")
        if spec.routes == ():
            raise PlatformError(f"app {name!r} has no route: a canary divides requests")
        app = self.controller.state.find_app(name)
        if app is None or app.revision == 0:
            raise PlatformError(
                f"app {name!r} has no running revision to compare a canary with",
                hint="Push it without --canary first; later pushes can be canaries.",
            )
        if app.state != "started":
            raise PlatformError(
                f"app {name!r} is stopped: a canary shares the requests of a running revision",
                hint=f"Start it first: conveyor start {name}",
            )

    def _run(self, name: str) -> CanaryRun:
        self.controller.state.app(name)
        run = self.runs.get(name)
        if run is None:
            raise NotFoundError(
                f"app {name!r} has no canary running",
                hint=f"Start one with: conveyor push --canary 10 (for {name})",
            )
        return run

    # -- the operations (each called with the app's lock held) --------------------------

    async def begin(
        self,
        revision: RevisionRecord,
        instances: int,
        policy: CanaryPolicy,
        progress: Progress,
    ) -> Deployment:
        """Start ``revision`` beside the app's current one, with ``policy.weight`` % of requests."""
        from conveyor.platform.controller import Deployment

        controller, name = self.controller, revision.app
        app = controller.state.app(name)
        release = controller.release(revision)
        count = max(1, instances)
        try:
            await controller.target.start_canary(
                release, count, progress, stable=app.revision, weight=policy.weight
            )
        except DeployError as failed:
            controller.record_failure(name, revision.number, failed)
            raise
        run = CanaryRun(
            name,
            app.revision,
            revision.number,
            count,
            policy.weight,
            policy,
            self.clock.now(),
            self.clock.wall(),
        )
        self.runs[name] = run
        controller.event(
            name,
            "canary-started",
            revision=revision.number,
            current=app.revision,
            weight=policy.weight,
            promote_after=policy.promote_after,
        )
        # Watched even when it may only end by hand: the windows are what `conveyor app` shows.
        run.task = asyncio.get_running_loop().create_task(self._watch(run))
        return Deployment(
            name,
            revision.number,
            count,
            f"canary revision {revision.number} gets {policy.weight} % of requests, "
            f"revision {app.revision} the rest",
        )

    async def set_weight(self, name: str, weight: int) -> CanaryRun:
        if not 0 <= weight <= 100:
            raise PlatformError(f"a canary's weight is a percentage (0-100), not {weight}")
        async with self.controller.lock(name):
            run = self._run(name)
            self.controller.target.set_canary_weight(name, weight)
            previous, run.weight = run.weight, weight
            self.controller.event(
                name, "canary-weight", revision=run.canary, weight=weight, previous=previous
            )
            return run

    async def promote(self, name: str, reason: str = "by hand") -> Deployment:
        async with self.controller.lock(name):
            return await self._promote(self._run(name), reason)

    async def abort(self, name: str, reason: str = "by hand") -> Deployment:
        async with self.controller.lock(name):
            return await self._abort(self._run(name), reason, "canary-aborted")

    async def _promote(self, run: CanaryRun, reason: str) -> Deployment:
        from conveyor.platform.controller import Deployment

        controller, name = self.controller, run.app
        self._forget(run)
        revision = controller.state.revision(name, run.canary)
        # Every request goes to the new revision (its instances already run), then the old drain.
        controller.target.set_canary_weight(name, 100)
        await controller.target.end_canary(controller.release(revision))
        controller.state.save_app(
            name, state="started", instances=run.instances, revision=run.canary
        )
        controller.event(
            name, "canary-promoted", revision=run.canary, previous=run.stable, reason=reason
        )
        return Deployment(
            name,
            run.canary,
            run.instances,
            f"revision {run.canary} promoted: it takes every request",
        )

    async def _abort(self, run: CanaryRun, reason: str, kind: str) -> Deployment:
        from conveyor.platform.controller import Deployment

        controller, name = self.controller, run.app
        self._forget(run)
        current = controller.state.revision(name, run.stable)
        controller.target.set_canary_weight(name, 0)
        await controller.target.end_canary(controller.release(current))
        controller.event(name, kind, revision=run.canary, current=run.stable, reason=reason)
        verb = "rolled back" if kind == "canary-rolled-back" else "aborted"
        return Deployment(
            name,
            run.stable,
            controller.state.app(name).instances,
            f"canary revision {run.canary} {verb}: revision {run.stable} takes every request",
        )

    def _forget(self, run: CanaryRun) -> None:
        self.runs.pop(run.app, None)
        task = run.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Stop watching (the platform stops; what it recorded stays)."""
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def forget(self, name: str) -> None:
        """The app is being deleted: its canary goes with it, unrecorded."""
        run = self.runs.get(name)
        if run is not None:
            self._forget(run)

    # -- the watcher ----------------------------------------------------------------------

    async def _watch(self, run: CanaryRun) -> None:
        """Judge each window; promote or roll back when the policy says so."""
        target = self.controller.target
        while True:
            await self.clock.sleep(run.policy.window)
            decision = run.step(target.canary_window(run.app), self.clock.now())
            if decision is None:
                continue
            action, reason = decision
            async with self.controller.lock(run.app):
                if self.runs.get(run.app) is not run:
                    return  # ended by hand while the lock was awaited
                try:
                    if action == "promote":
                        await self._promote(run, reason)
                    else:
                        await self._abort(run, reason, "canary-rolled-back")
                except Exception as exc:  # nobody awaits this task: the event log must say it
                    log.exception("the canary of %s could not %s", run.app, action)
                    self.controller.event(
                        run.app, "canary-failed", revision=run.canary, action=action, error=str(exc)
                    )
            return

    def after_restart(self, name: str) -> None:
        """A canary the last platform left running is over: only the current revision came back."""
        state = self.controller.state
        started = state.last_event(name, "canary-started")
        if started is None:
            return
        if any(
            (ended := state.last_event(name, kind)) is not None and ended.id > started.id
            for kind in ENDINGS
        ):
            return
        self.controller.event(
            name,
            "canary-aborted",
            revision=started.revision,
            reason="the platform restarted; the current revision takes every request",
        )
