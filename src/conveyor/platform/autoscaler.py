"""The autoscaler's decisions: how many instances an app should have, given what was measured.

Pure logic on an injected clock (:mod:`.clock`), fed one :class:`Sample` at a
time by whoever measures (:mod:`.autoscaling` reads the router's meter and the
instances' usage). A change is made only once its condition has held for its
breach duration, and none within the cool-down after the previous one, so
load that comes and goes does not make instances come and go::

    scaler = Autoscaler(policy, clock)
    scaler.decide(Sample(instances=2, ongoing=23))   # None: not for 30 s yet
    await clock.advance(30)
    scaler.decide(Sample(instances=2, ongoing=23))
    # Decision(2, 6, 'ongoing requests 11.5 per instance > 4 for 30 s')

Crash backoff wins: while an instance of the app waits out its backoff, the
autoscaler adds none (more copies of a crashing app only crash more). During a
canary the backoff is per revision: the caller sets ``backoff`` only when both
revisions crash-loop, and the canary's split holds just the crashing side.

A canary's app is decided as one (both revisions' load, one count, which
:mod:`.canary` shares by the weight); its ``floor`` keeps one instance of each
revision, so it is never scaled to zero while the canary runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conveyor.platform.clock import Clock
from conveyor.platform.policy import AutoscalingSpec, ScalingRule, adjusted

__all__ = ["Autoscaler", "Decision", "Sample"]


@dataclass(frozen=True)
class Sample:
    """What was measured of one app at one moment."""

    #: Instances the app has now (as desired).
    instances: int
    #: Requests in progress at the router, over all instances.
    ongoing: float = 0.0
    #: Requests per second over the last window.
    throughput: float = 0.0
    #: The router's p95 response time over the last window (None: no requests).
    p95_ms: float | None = None
    #: CPU use in percent of one core, averaged over the instances (None: unknown).
    cpu: float | None = None
    #: Resident memory in percent of the limit, averaged (None: no limit or unknown).
    memory: float | None = None
    #: Seconds since a request last came or went.
    idle_for: float = 0.0
    #: An instance crashed and waits out its backoff (during a canary: both revisions' do).
    backoff: bool = False
    #: Messages waiting in a stream app's input (None: not a stream app, or unknown).
    lag: float | None = None
    #: Fewest instances the app may have now, whatever the policy says (a canary in progress
    #: needs one of each revision: 2), and no scaling to zero while it is above 0.
    floor: int = 0


@dataclass(frozen=True)
class Decision:
    """Scale from ``previous`` to ``instances`` because of ``reason``."""

    previous: int
    instances: int
    reason: str

    @property
    def text(self) -> str:
        """``scaled 2 -> 4: ongoing requests 11.5 per instance > 4 for 30 s``."""
        return f"scaled {self.previous} -> {self.instances}: {self.reason}"


class Autoscaler:
    """Decides for one app under one policy; keeps when each condition began to hold."""

    def __init__(self, policy: AutoscalingSpec, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        #: When each condition ("target-up", "target-down", "rule-0" ...) began to hold.
        self._since: dict[str, float] = {}
        self._last_change: float | None = None

    def decide(self, sample: Sample) -> Decision | None:
        """The change to make now, or None; a returned decision starts the cool-down."""
        now = self.clock.now()
        policy, current = self.policy, sample.instances
        decision = self._bounds(sample) or self._idle(sample, now)
        if decision is None:
            wanted = [self._target(sample, now), self._lag(sample, now)]
            wanted += [self._rule(i, rule, sample, now) for i, rule in enumerate(policy.rules)]
            ups = [w for w in wanted if w is not None and w.instances > current]
            downs = [w for w in wanted if w is not None and w.instances < current]
            # Any reason to grow wins; then the gentlest reason to shrink.
            if ups:
                decision = max(ups, key=lambda d: d.instances)
            elif downs:
                decision = max(downs, key=lambda d: d.instances)
            if decision is not None and self._cooling(now):
                return None
        if decision is None or decision.instances == current:
            return None
        if decision.instances > current and sample.backoff:
            return None  # never fight the crash backoff
        self._last_change = now
        self._since.clear()
        return decision

    def woken(self) -> Decision:
        """A request came for the app scaled to zero: one instance now (no cool-down)."""
        self._last_change = self.clock.now()
        self._since.clear()
        count = self.policy.clamp(1)
        return Decision(0, count, "a request arrived while it had no instance")

    # -- the conditions -----------------------------------------------------------

    def _clamp(self, count: int, sample: Sample) -> int:
        return max(sample.floor, self.policy.clamp(count))

    def _cooling(self, now: float) -> bool:
        last = self._last_change
        return last is not None and now - last < float(self.policy.cool_down)

    def _held(self, key: str, holds: bool, now: float, duration: float) -> float | None:
        """Seconds ``key``'s condition has held once that is at least ``duration``, else None."""
        if not holds:
            self._since.pop(key, None)
            return None
        began = self._since.setdefault(key, now)
        return now - began if now - began >= duration else None

    def _bounds(self, sample: Sample) -> Decision | None:
        policy, current = self.policy, sample.instances
        if current == 0:
            return None  # stopped for idleness (or by hand): a request wakes it
        if current < policy.min_instances:
            return Decision(current, policy.min_instances, "below min-instances")
        if current < sample.floor:
            return Decision(current, sample.floor, "a canary runs one instance of each revision")
        if current > policy.max_instances:
            return Decision(current, policy.max_instances, "above max-instances")
        return None

    def _idle(self, sample: Sample, now: float) -> Decision | None:
        policy = self.policy
        if policy.min_instances > 0 or sample.floor > 0 or not sample.instances or sample.ongoing:
            return None
        idle = float(policy.idle_period)
        if sample.idle_for < idle:
            return None
        return Decision(sample.instances, 0, f"no request for {_secs(sample.idle_for)} s")

    def _target(self, sample: Sample, now: float) -> Decision | None:
        target = self.policy.target_ongoing_requests
        return self._toward("target", "ongoing requests", sample.ongoing, target, sample, now)

    def _lag(self, sample: Sample, now: float) -> Decision | None:
        target = self.policy.target_lag
        return self._toward("lag", "consumer lag", sample.lag, target, sample, now)

    def _toward(
        self,
        key: str,
        what: str,
        total: float | None,
        target: float | None,
        sample: Sample,
        now: float,
    ) -> Decision | None:
        """As many instances as ``total`` / ``target``, once that differed for the breach."""
        current = sample.instances
        if target is None or total is None or current == 0:
            return None
        wanted = self._clamp(math.ceil(total / target), sample)
        duration = float(self.policy.breach_duration)
        up = self._held(key + "-up", wanted > current, now, duration)
        down = self._held(key + "-down", wanted < current, now, duration)
        held = up if up is not None else down
        if held is None:
            return None
        sign = ">" if up is not None else "<"
        per = _num(total / current)
        reason = f"{what} {per} per instance {sign} {_num(target)} for {_secs(held)} s"
        return Decision(current, wanted, reason)

    def _rule(self, index: int, rule: ScalingRule, sample: Sample, now: float) -> Decision | None:
        current = sample.instances
        value = _value(rule.metric, sample)
        holds = value is not None and current > 0 and rule.holds(value)
        held = self._held(f"rule-{index}", holds, now, float(rule.breach_duration))
        if held is None or value is None:
            return None
        wanted = self._clamp(adjusted(current, rule.adjustment), sample)
        return Decision(current, wanted, f"{rule.describe(value)} for {_secs(held)} s")


def _value(metric: str, sample: Sample) -> float | None:
    if metric == "ongoing-requests":
        return sample.ongoing / sample.instances if sample.instances else None
    return {
        "cpu": sample.cpu,
        "memory": sample.memory,
        "throughput": sample.throughput,
        "response-time-p95": sample.p95_ms,
    }[metric]


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _secs(value: float) -> str:
    return f"{value:.0f}"
