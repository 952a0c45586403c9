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

**One capacity, split by the weight.** A canary does not add instances: the
app's count (the push's ``instances``, or what its autoscaler chose) is shared
by the two revisions in proportion to the weight (:func:`shares`, at least one
each), re-split at every weight change and every autoscaler decision; the
autoscaler decides that one total from the whole app's load. A promotion hands
the whole count to the new revision, an abort back to the current one. Each
hand-over starts the receiving side's instances before the other side's stop
(as a rolling push does), so no request fails and no side is left overloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFoundError
from conveyor.platform.backoff import crash_looping
from conveyor.platform.errors import DeployError, PlatformError
from conveyor.platform.spec import AppSpec, CanaryPolicy
from conveyor.platform.split import Measure

if TYPE_CHECKING:
    from conveyor.platform.clock import Clock
    from conveyor.platform.controller import Controller, Deployment
    from conveyor.platform.policy import AutoscalingSpec
    from conveyor.platform.target import Progress
    from conveyor.store.apps import RevisionRecord

__all__ = ["Canaries", "CanaryPolicy", "CanaryRun", "shares", "verdict"]

log = logging.getLogger("conveyor.platform.canary")

#: A p95 this much slower (ms) than the current revision's is never noise, whatever the ratio.
LATENCY_SLACK_MS = 10.0
#: Event kinds that end a canary.
ENDINGS = ("canary-promoted", "canary-aborted", "canary-rolled-back")
#: Fewest instances of an app while a canary runs: one of each revision.
FLOOR = 2


def shares(total: int, weight: int) -> tuple[int, int]:
    """``total`` instances split by ``weight``: (current revision's, new revision's).

    The new revision gets its share rounded up (as Argo Rollouts does with an
    HPA), and each revision keeps at least one instance, so either can take
    its share of requests at once and a promotion or abort never starts cold.

    >>> shares(4, 10), shares(4, 50), shares(4, 90), shares(10, 25), shares(2, 0)
    ((3, 1), (2, 2), (1, 3), (7, 3), (1, 1))
    """
    total = max(FLOOR, total)
    new = min(total - 1, max(1, math.ceil(total * weight / 100)))
    return total - new, new


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
    #: Instances of the new revision and of the current one: the app's count, split.
    instances: int
    stable_instances: int
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
    #: Revisions whose instances crash-loop, and why: their side does not grow until they run.
    held: dict[int, str] = field(default_factory=dict)
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
            "instances": {
                str(self.stable): self.stable_instances,
                str(self.canary): self.instances,
            },
            "started_at": self.started_at,
            "held": {str(revision): why for revision, why in self.held.items()},
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
        scaling = self._autoscaling(name, app.revision)
        if scaling is not None and scaling.max_instances < FLOOR:
            raise PlatformError(
                f"app {name!r} runs at most {scaling.max_instances} instance, and a canary "
                f"shares the app's instances with one of each revision at least",
                hint="Raise its autoscaling max-instances to 2 or more first.",
            )

    def _autoscaling(self, name: str, revision: int) -> AutoscalingSpec | None:
        """The policy of ``name``'s ``revision``: the current one's governs during a canary."""
        controller = self.controller
        return controller.spec(controller.state.revision(name, revision)).autoscaling

    def check_scale(self, name: str, instances: int) -> None:
        """Refuse a count a canary in progress cannot share (it needs one per revision)."""
        run = self.runs.get(name)
        if run is not None and instances < FLOOR:
            raise PlatformError(
                f"app {name!r} has a canary running, which needs {FLOOR} instances at least "
                f"(one of each revision), not {instances}",
                hint=f"End it first: conveyor canary {name} promote (or abort).",
            )

    async def scale(self, name: str, instances: int) -> bool:
        """Share ``instances`` between the revisions of ``name``'s canary (called with the app's
        lock held); False when it has none (the caller scales its current revision)."""
        run = self.runs.get(name)
        if run is None:
            return False
        await self._resize(run, *self._split(run, instances, run.weight))
        return True

    def _split(self, run: CanaryRun, total: int, weight: int) -> tuple[int, int]:
        """``total`` shared by ``weight``, except that a held side keeps what it runs (or less)."""
        stable, canary = shares(total, weight)
        if run.stable in run.held:
            stable = min(stable, run.stable_instances)
        if run.canary in run.held:
            canary = min(canary, run.instances)
        return stable, canary

    def _count(self, run: CanaryRun) -> int:
        """The app's count the two revisions share (a held side may run less than its share)."""
        recorded = self.controller.state.app(run.app).instances
        return max(recorded, run.instances + run.stable_instances)

    async def hold(self, name: str) -> bool:
        """Hold the side of ``name``'s canary whose instances crash-loop (and release it once
        they all run); True when both sides are held, so the app should not grow at all."""
        run = self.runs.get(name)
        if run is None:
            return False
        statuses = self.controller.target.status(name)
        held = crash_looping((run.stable, run.canary), statuses, run.held)
        if held.keys() != run.held.keys():
            async with self.controller.lock(name):
                if self.runs.get(name) is not run:
                    return False
                await self._rehold(run, held)
        run.held = held
        return len(held) == 2

    async def _rehold(self, run: CanaryRun, held: dict[int, str]) -> None:
        """Record which sides became held or free; a freed side gets its share back."""
        for revision, why in held.items():
            if revision not in run.held:
                count = run.instances if revision == run.canary else run.stable_instances
                self.controller.event(
                    run.app,
                    "canary-crashing",
                    revision=revision,
                    reason=why,
                    instances=count,
                    held=f"its side stays at {count} instance(s) until its instances run",
                )
        freed = [revision for revision in run.held if revision not in held]
        run.held = held
        for revision in freed:
            self.controller.event(run.app, "canary-recovered", revision=revision)
        if freed:
            await self._resize(run, *self._split(run, self._count(run), run.weight))

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
        total = self._total(name, app.revision, app.instances, instances)
        stable_count, count = shares(total, policy.weight)
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
            app.instances,
            policy.weight,
            policy,
            self.clock.now(),
            self.clock.wall(),
        )
        self.runs[name] = run
        if stable_count != app.instances:
            progress(f"Revision {app.revision} keeps {stable_count} of the {total} instance(s)...")
        await self._resize(run, stable_count, count)
        controller.state.save_app(name, state="started", instances=total, revision=app.revision)
        controller.event(
            name,
            "canary-started",
            revision=revision.number,
            current=app.revision,
            weight=policy.weight,
            promote_after=policy.promote_after,
            instances=count,
            current_instances=stable_count,
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
            previous = run.weight
            stable_count, count = self._split(run, self._count(run), weight)
            await self._resize(run, stable_count, count, weight)
            self.controller.event(
                name,
                "canary-weight",
                revision=run.canary,
                weight=weight,
                previous=previous,
                instances=count,
                current_instances=stable_count,
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
        revision = controller.state.revision(name, run.canary)
        release = controller.release(revision)
        total = self._count(run)
        scaling = controller.spec(revision).autoscaling
        if scaling is not None:  # its own policy governs from now on
            total = scaling.clamp(total)
        # The whole count goes to the new revision: its instances start before any request
        # moves, then the old revision's drain and stop.
        if total > run.instances:
            await controller.target.scale(release, total)
        self._forget(run)
        controller.target.set_canary_weight(name, 100)
        await controller.target.end_canary(release)
        if total < run.instances:
            await controller.target.scale(release, total)
        controller.state.save_app(name, state="started", instances=total, revision=run.canary)
        controller.event(
            name, "canary-promoted", revision=run.canary, previous=run.stable, reason=reason
        )
        return Deployment(
            name,
            run.canary,
            total,
            f"revision {run.canary} promoted: it takes every request",
        )

    async def _abort(self, run: CanaryRun, reason: str, kind: str) -> Deployment:
        from conveyor.platform.controller import Deployment

        controller, name = self.controller, run.app
        current = controller.release(controller.state.revision(name, run.stable))
        total = self._count(run)  # a side held by its crashes gives back its whole share
        # The whole count goes back to the current revision before it takes every request.
        if total > run.stable_instances:
            await controller.target.scale(current, total)
        self._forget(run)
        controller.target.set_canary_weight(name, 0)
        await controller.target.end_canary(current)
        controller.state.save_app(name, state="started", instances=total, revision=run.stable)
        controller.event(name, kind, revision=run.canary, current=run.stable, reason=reason)
        verb = "rolled back" if kind == "canary-rolled-back" else "aborted"
        return Deployment(
            name,
            run.stable,
            total,
            f"canary revision {run.canary} {verb}: revision {run.stable} takes every request",
        )

    def _total(self, name: str, stable: int, running: int, asked: int) -> int:
        """The count a canary shares: what the autoscaler chose (within its policy), or the
        push's ``asked`` for an app without one; two at least."""
        scaling = self._autoscaling(name, stable)
        if scaling is None:
            return max(FLOOR, asked)
        return max(FLOOR, scaling.min_instances, min(scaling.max_instances, running))

    async def _resize(
        self, run: CanaryRun, stable: int, canary: int, weight: int | None = None
    ) -> None:
        """Run ``stable`` and ``canary`` instances of the two revisions, with ``weight``.

        A side that grows does so first (as far as ``max-instances`` leaves room),
        the requests move (``weight``) only once its new instances are healthy,
        and a side that shrinks does so last, its instances drained: a re-split
        fails no request, and an app at its ``max-instances`` never runs more.
        """
        controller, target = self.controller, self.controller.target
        scaling = self._autoscaling(run.app, run.stable)
        room = None if scaling is None else scaling.max_instances

        async def scale(revision: int, count: int) -> None:
            release = controller.release(controller.state.revision(run.app, revision))
            await target.scale(release, count)
            if revision == run.stable:
                run.stable_instances = count
            else:
                run.instances = count

        def have(revision: int) -> int:
            return run.stable_instances if revision == run.stable else run.instances

        wanted = ((run.stable, stable), (run.canary, canary))
        for revision, count in wanted:
            # What runs now counts against the bound; beyond it, growing waits for the shrink.
            free = count if room is None else room - run.instances - run.stable_instances
            first = min(count, have(revision) + free)
            if first > have(revision):
                await scale(revision, first)
        if weight is not None:
            target.set_canary_weight(run.app, weight)
            run.weight = weight
        for revision, count in wanted:
            if count < have(revision):
                await scale(revision, count)
        for revision, count in wanted:
            if count > have(revision):
                await scale(revision, count)

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
