"""A canary shares the app's instances by its weight, and the autoscaler decides one count for both.

The controller with the scripted target of its tests (which records how many
instances of each revision it was asked to run), a hand-fed router meter and a
fake clock: every split, re-split, hand-over and autoscaler decision plays out
without processes or real time. ``tests/platform/test_canary_platform.py``
does the same end to end under load.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.canary import canary_text
from conveyor.platform.canary import CanaryPolicy, shares
from conveyor.platform.clock import FakeClock, settle
from conveyor.platform.controller import Controller
from conveyor.platform.errors import PlatformError
from conveyor.platform.policy import AutoscalingSpec
from conveyor.platform.spec import AppSpec
from conveyor.platform.target import InstanceStatus, Release
from tests.platform.test_autoscaling_controller import POLICY
from tests.platform.test_canary import ECHO as ONE
from tests.platform.test_canary import TWO, quiet, scripted
from tests.platform.test_controller import ScriptedTarget, target_of


class CountingTarget(ScriptedTarget):
    """The scripted target, keeping the most instances of the app it ran at any moment."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    async def scale(self, release: Release, instances: int) -> None:
        await super().scale(release, instances)
        (_, running), canary = split(self)
        self.peak = max(self.peak, running + (0 if canary is None else canary[1]))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture
def controller(tmp_path: Path, clock: FakeClock) -> Iterator[Controller]:
    yield from scripted(tmp_path, clock, CountingTarget())


def split(target: ScriptedTarget) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(revision, instances) of the current revision, and of the canary (None: no canary)."""
    release, count = target.running["echo"]
    canary = target.canaries.get("echo")
    return (release.revision, count), None if canary is None else (canary[0].revision, canary[1])


def scaled(controller: Controller) -> list[str]:
    return [
        f"{e.details['previous']} -> {e.details['instances']}: {e.details['reason']}"
        for e in controller.state.events("echo", limit=100)
        if e.kind == "scaled" and e.details.get("by") == "autoscaler"
    ]


def test_the_split_rounds_the_new_revisions_share_up_and_keeps_one_of_each() -> None:
    assert [shares(4, w) for w in (1, 10, 25, 50, 75, 99)] == [
        (3, 1), (3, 1), (3, 1), (2, 2), (1, 3), (1, 3),
    ]  # fmt: skip
    assert shares(8, 10) == (7, 1)
    assert shares(8, 30) == (5, 3)
    assert shares(1, 10) == (1, 1)  # a canary needs one of each, whatever the count


def test_a_canary_shares_the_apps_count_and_hands_it_over(controller: Controller) -> None:
    target = target_of(controller)

    async def work() -> None:
        await controller.push(ONE, None, 4, quiet)
        done = await controller.push(TWO, None, 4, quiet, canary=CanaryPolicy(rollback=False))
        assert done.instances == 1
        assert split(target) == ((1, 3), (2, 1))  # 4 in all, not 8
        assert controller.state.app("echo").instances == 4
        assert controller.canaries.get("echo") is not None
        view = controller.canaries._run("echo").view()
        assert view["instances"] == {"1": 3, "2": 1}

        await controller.canaries.set_weight("echo", 50)
        assert split(target) == ((1, 2), (2, 2))
        await controller.scale("echo", 6)  # `conveyor scale` sets the count both share
        assert split(target) == ((1, 3), (2, 3))
        assert controller.state.app("echo").instances == 6
        with pytest.raises(PlatformError, match="needs 2 instances at least"):
            await controller.scale("echo", 1)
        assert controller.state.app("echo").instances == 6  # nothing recorded

        aborted = await controller.canaries.abort("echo")
        assert aborted.instances == 6
        assert split(target) == ((1, 6), None)  # the whole count back to the current revision
        assert controller.state.app("echo").instances == 6

        await controller.push(TWO, None, 6, quiet, canary=CanaryPolicy(weight=30, rollback=False))
        assert split(target) == ((1, 4), (3, 2))
        promoted = await controller.canaries.promote("echo")
        assert promoted.instances == 6
        assert split(target) == ((3, 6), None)  # the whole count to the new revision
        assert controller.state.app("echo").instances == 6

    asyncio.run(work())
    events = controller.state.events("echo", limit=100)
    weights = [e.details for e in events if e.kind == "canary-weight"]
    assert weights[-1]["instances"] == 2
    assert weights[-1]["current_instances"] == 2


def test_an_app_of_one_instance_runs_one_of_each_during_a_canary(controller: Controller) -> None:
    target = target_of(controller)

    async def work() -> None:
        await controller.push(ONE, None, 1, quiet)
        await controller.push(TWO, None, 1, quiet, canary=CanaryPolicy(rollback=False))
        assert split(target) == ((1, 1), (2, 1))
        await controller.canaries.promote("echo")
        assert split(target) == ((2, 2), None)

    asyncio.run(work())


def test_a_canary_of_an_app_scaled_to_zero_starts_one_instance_of_each(
    controller: Controller,
) -> None:
    target = target_of(controller)
    one = AppSpec(name="echo", kind="echo", options={"word": "one"}, autoscaling=POLICY)

    async def work() -> None:
        await controller.push(one, None, 1, quiet)
        await controller.scale("echo", 0)
        assert split(target) == ((1, 0), None)
        await controller.push(TWO, None, 1, quiet, canary=CanaryPolicy(rollback=False))
        assert split(target) == ((1, 1), (2, 1))
        assert controller.state.app("echo").instances == 2

    asyncio.run(work())


def test_the_autoscaler_decides_one_count_for_both_revisions_within_max(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)
    one = AppSpec(name="echo", kind="echo", options={"word": "one"}, autoscaling=POLICY)
    two = AppSpec(name="echo", kind="echo", options={"word": "two"}, autoscaling=POLICY)

    async def work() -> None:
        await controller.start()
        await settle()  # the autoscaling loop waits on the clock
        try:
            await controller.push(one, None, 1, quiet)
            await controller.push(two, None, 1, quiet, canary=CanaryPolicy(weight=25))
            assert split(target) == ((1, 1), (2, 1))  # one of each: 2, though min-instances is 0
            await settle()
            # Requests in progress on both revisions count as the app's: 13 want 4 instances.
            tokens = [controller.meter.begin("echo") for _ in range(13)]
            await clock.advance(12)
            assert scaled(controller) == ["2 -> 4: ongoing requests 6.5 per instance > 4 for 10 s"]
            assert split(target) == ((1, 3), (2, 1))  # 25 %, the new revision's share rounded up
            tokens += [controller.meter.begin("echo") for _ in range(40)]
            await clock.advance(60)
            assert split(target) == ((1, 3), (2, 1))  # never above max-instances, both together
            await controller.canaries.set_weight("echo", 50)
            assert split(target) == ((1, 2), (2, 2))  # re-split at the step, same count
            await controller.canaries.set_weight("echo", 25)
            assert split(target) == ((1, 3), (2, 1))
            assert isinstance(target, CountingTarget)
            assert target.peak == 4  # at max-instances a re-split shrinks one side first
            for token in tokens:
                controller.meter.end(token, 1, 200, 0.01)
            # Idle for longer than idle-period: in to 2, one of each, never to zero.
            await clock.advance(300)
            assert split(target) == ((1, 1), (2, 1))
            assert scaled(controller)[1:] == [
                "4 -> 2: ongoing requests 0 per instance < 4 for 10 s"
            ]
            assert controller.state.app("echo").instances == 2
            await controller.canaries.promote("echo")
            assert split(target) == ((2, 2), None)
            # Its own policy again: idle, so to zero after idle-period (in first, then zero).
            await clock.advance(300)
            assert split(target) == ((2, 0), None)
        finally:
            await controller.close()

    asyncio.run(work())


def test_a_canary_of_an_app_limited_to_one_instance_is_refused(controller: Controller) -> None:
    single = AutoscalingSpec(min_instances=1, max_instances=1, target_ongoing_requests=4)
    one = AppSpec(name="echo", kind="echo", options={"word": "one"}, autoscaling=single)

    async def work() -> None:
        await controller.push(one, None, 1, quiet)
        with pytest.raises(PlatformError, match="runs at most 1 instance") as refused:
            await controller.push(TWO, None, 1, quiet, canary=CanaryPolicy())
        assert "max-instances to 2 or more" in str(refused.value.hint)

    asyncio.run(work())
    assert [r.number for r in controller.state.revisions("echo")] == [1]


def instance(revision: int, state: str, restarts: int = 0) -> InstanceStatus:
    crash = {"reason": "exited with status 1"} if restarts else None
    ready = state == "RUNNING"
    return InstanceStatus(
        0, revision, state, ready, 0.0, "127.0.0.1", None, None, restarts, None, None, crash
    )


def kinds(controller: Controller, *wanted: str) -> list[Mapping[str, Any]]:
    events = controller.state.events("echo", limit=100)
    return [e.details for e in reversed(events) if e.kind in wanted]


WIDE = dataclasses.replace(POLICY, max_instances=8)


async def crash_looping_canary(controller: Controller, clock: FakeClock) -> list[str]:
    """An autoscaled app with a canary at 50 % whose instance crashes again and again (the
    current revision's runs), then 13 requests in progress: 2 -> 4, the canary's side held."""
    target = target_of(controller)
    one = AppSpec(name="echo", kind="echo", options={"word": "one"}, autoscaling=WIDE)
    two = AppSpec(name="echo", kind="echo", options={"word": "two"}, autoscaling=WIDE)
    await controller.push(one, None, 1, quiet)
    await controller.push(two, None, 1, quiet, canary=CanaryPolicy(weight=50, rollback=False))
    assert split(target) == ((1, 1), (2, 1))
    target.statuses["echo"] = [instance(1, "RUNNING"), instance(2, "CRASHED", 5)]
    tokens = [controller.meter.begin("echo") for _ in range(13)]
    await clock.advance(12)
    assert scaled(controller) == ["2 -> 4: ongoing requests 6.5 per instance > 4 for 10 s"]
    assert split(target) == ((1, 2), (2, 1))  # its share of 4; the canary's held at 1
    return tokens


def autoscaled(controller: Controller, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` with the controller started, its autoscaling loop waiting on the clock."""

    async def work() -> None:
        await controller.start()
        await settle()
        try:
            await body()
        finally:
            await controller.close()

    asyncio.run(work())


def test_a_crash_looping_canary_holds_only_its_own_side(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)

    async def body() -> None:
        tokens = await crash_looping_canary(controller, clock)
        tokens += [controller.meter.begin("echo") for _ in range(19)]
        await clock.advance(60)
        assert scaled(controller)[1:] == ["4 -> 8: ongoing requests 8 per instance > 4 for 28 s"]
        assert split(target) == ((1, 4), (2, 1))  # the current revision keeps scaling out
        crashing = kinds(controller, "canary-crashing")
        assert len(crashing) == 1  # once, when the hold began
        assert "revision 2 is crash-looping" in str(crashing[0]["reason"])
        shown = canary_text("echo", controller.canaries._run("echo").view())
        assert any("held: revision 2 is crash-looping" in line for line in shown)
        assert controller.state.app("echo").instances == 8

        aborted = await controller.canaries.abort("echo")
        assert aborted.instances == 8
        assert split(target) == ((1, 8), None)  # the whole count, the held share too

    autoscaled(controller, body)


def test_a_canary_that_stops_crashing_gets_its_share_back(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)

    async def body() -> None:
        tokens = await crash_looping_canary(controller, clock)
        # Restarted after its backoff: starting is not running yet, so still held.
        target.statuses["echo"] = [instance(1, "RUNNING"), instance(2, "STARTING", 5)]
        await clock.advance(3)
        assert split(target) == ((1, 2), (2, 1))
        target.statuses["echo"] = [instance(1, "RUNNING"), instance(2, "RUNNING", 5)]
        await clock.advance(2)
        assert split(target) == ((1, 2), (2, 2))  # its share of the 4 again
        assert len(kinds(controller, "canary-recovered")) == 1
        # Both revisions crash-looping: the app does not grow at all.
        target.statuses["echo"] = [instance(1, "CRASHED", 5), instance(2, "CRASHED", 5)]
        tokens += [controller.meter.begin("echo") for _ in range(19)]
        await clock.advance(60)
        assert split(target) == ((1, 2), (2, 2))
        assert controller.state.app("echo").instances == 4

    autoscaled(controller, body)
