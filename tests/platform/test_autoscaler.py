"""The autoscaler's decisions, driven by scripted metrics on a fake clock (no time passes)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from conveyor.platform.autoscaler import Autoscaler, Decision, Sample
from conveyor.platform.clock import FakeClock
from conveyor.platform.policy import AutoscalingSpec, ScalingRule


def play(
    policy: AutoscalingSpec, script: Sequence[Sample], *, step: float = 1.0
) -> list[tuple[float, Decision]]:
    """Feed one sample per ``step`` seconds; the decisions made, by second since the start.

    Each sample's ``instances`` is taken from the decisions made so far, as the
    platform would run them.
    """

    async def main() -> list[tuple[float, Decision]]:
        clock = FakeClock(start=0.0)
        scaler = Autoscaler(policy, clock)
        made: list[tuple[float, Decision]] = []
        count = script[0].instances
        for sample in script:
            decision = scaler.decide(Sample(**{**vars(sample), "instances": count}))
            if decision is not None:
                made.append((clock.now(), decision))
                count = decision.instances
            await clock.advance(step)
        return made

    return asyncio.run(main())


def steady(sample: Sample, seconds: int) -> list[Sample]:
    return [sample] * seconds


TARGET = AutoscalingSpec(
    min_instances=1, max_instances=8, target_ongoing_requests=4, breach_duration=30, cool_down=60
)


def test_ongoing_requests_above_target_for_the_breach_duration_scale_out() -> None:
    made = play(TARGET, steady(Sample(instances=2, ongoing=23), 40))
    assert [(at, d.text) for at, d in made] == [
        (30.0, "scaled 2 -> 6: ongoing requests 11.5 per instance > 4 for 30 s")
    ]


def test_a_burst_shorter_than_the_breach_duration_changes_nothing() -> None:
    burst = steady(Sample(instances=2, ongoing=40), 20) + steady(Sample(instances=2, ongoing=6), 40)
    assert play(TARGET, burst) == []


def test_flapping_load_does_not_flap_the_instances() -> None:
    # Load that swings every 10 s never holds a breach for 30 s.
    wave = (
        steady(Sample(instances=2, ongoing=30), 10) + steady(Sample(instances=2, ongoing=1), 10)
    ) * 10
    assert play(TARGET, wave) == []


def test_the_cool_down_spaces_changes_and_scale_in_follows_the_load_down() -> None:
    high = steady(Sample(instances=2, ongoing=60), 100)
    low = steady(Sample(instances=2, ongoing=2), 200)
    made = play(TARGET, high + low)
    counts = [(at, d.previous, d.instances) for at, d in made]
    # Out at 30 s (breach), to the maximum; the cool-down keeps later changes >= 60 s apart;
    # in once the low load held for 30 s after the cool-down.
    assert counts[0] == (30.0, 2, 8)
    assert counts[1] == (130.0, 8, 1)
    assert all(b[0] - a[0] >= 60 for a, b in itertools.pairwise(counts))
    assert "ongoing requests 0.2 per instance < 4 for 30 s" in made[1][1].reason


@pytest.mark.parametrize(
    ("rule", "sample", "reason"),
    [
        (
            ScalingRule("cpu", 70, ">", "+1", 30),
            Sample(instances=2, cpu=85),
            "cpu 85 % > 70 % for 30 s",
        ),
        (
            ScalingRule("memory", 80, ">=", "+1", 30),
            Sample(instances=2, memory=80),
            "memory 80 % >= 80 % for 30 s",
        ),
        (
            ScalingRule("throughput", 100, ">", "+50%", 30),
            Sample(instances=2, throughput=150),
            "throughput 150 requests/s > 100 requests/s for 30 s",
        ),
        (
            ScalingRule("response-time-p95", "200ms", ">", "+50%", 30),
            Sample(instances=2, p95_ms=340),
            "response time p95 340 ms > 200 ms for 30 s",
        ),
        (
            ScalingRule("ongoing-requests", 3, ">", "+1", 30),
            Sample(instances=2, ongoing=9),
            "ongoing requests per instance 4.5 > 3 for 30 s",
        ),
    ],
)
def test_each_metric_rule_scales_out_after_its_breach(
    rule: ScalingRule, sample: Sample, reason: str
) -> None:
    policy = AutoscalingSpec(max_instances=8, rules=(rule,), cool_down=60)
    made = play(policy, steady(sample, 31))
    assert [(at, d.previous, d.instances, d.reason) for at, d in made] == [(30.0, 2, 3, reason)]


def test_a_rule_scales_in_and_never_below_the_minimum() -> None:
    rule = ScalingRule("cpu", 10, "<", "-50%", "10s")
    policy = AutoscalingSpec(min_instances=2, max_instances=8, rules=(rule,), cool_down=20)
    made = play(policy, steady(Sample(instances=8, cpu=3), 100))
    assert [(d.previous, d.instances) for _, d in made] == [(8, 4), (4, 2)]


def test_a_growing_app_in_crash_backoff_is_not_scaled_out() -> None:
    sample = Sample(instances=2, ongoing=40, backoff=True)
    assert play(TARGET, steady(sample, 100)) == []
    # Once the backoff is over, the breach that held all along is acted on.
    made = play(TARGET, [*steady(sample, 40), Sample(instances=2, ongoing=40)])
    assert [(d.previous, d.instances) for _, d in made] == [(2, 8)]


def test_an_idle_app_with_min_zero_stops_and_a_request_wakes_it() -> None:
    policy = AutoscalingSpec(min_instances=0, max_instances=4, idle_period="5m")
    idle = [Sample(instances=1, idle_for=float(t)) for t in range(0, 400)]
    made = play(policy, idle)
    assert [(at, d.text) for at, d in made] == [(300.0, "scaled 1 -> 0: no request for 300 s")]

    async def wake() -> Decision:
        return Autoscaler(policy, FakeClock()).woken()

    assert asyncio.run(wake()).text == "scaled 0 -> 1: a request arrived while it had no instance"


def test_an_app_outside_its_bounds_is_brought_back_at_once() -> None:
    policy = AutoscalingSpec(min_instances=2, max_instances=3)
    assert [d.text for _, d in play(policy, [Sample(instances=1)])] == [
        "scaled 1 -> 2: below min-instances"
    ]
    assert [d.text for _, d in play(policy, [Sample(instances=5)])] == [
        "scaled 5 -> 3: above max-instances"
    ]


def test_a_stream_app_follows_its_consumer_lag_within_its_counts() -> None:
    policy = AutoscalingSpec(max_instances=4, target_lag=1000, breach_duration=10, cool_down=30)
    backlog = steady(Sample(instances=1, lag=4200), 15) + steady(Sample(instances=1, lag=0), 60)
    made = play(policy, backlog)
    assert [(at, d.text) for at, d in made] == [
        (10.0, "scaled 1 -> 4: consumer lag 4200 per instance > 1000 for 10 s"),
        (40.0, "scaled 4 -> 1: consumer lag 0 per instance < 1000 for 25 s"),
    ]
