"""Autoscaling through the controller: measured load becomes recorded decisions and target scales.

The router's meter is fed by hand and time is a fake clock; the target is the
scripted one of the controller's tests, so what is asked of it shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.platform.clock import FakeClock, settle
from conveyor.platform.controller import Controller
from conveyor.platform.policy import AutoscalingSpec
from conveyor.platform.router import Meter
from conveyor.platform.spec import AppSpec
from conveyor.platform.target import InstanceStatus
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry
from tests.platform.test_controller import ScriptedTarget

POLICY = AutoscalingSpec(
    min_instances=0,
    max_instances=4,
    target_ongoing_requests=4,
    breach_duration=10,
    cool_down=30,
    idle_period=120,
)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Controller, ScriptedTarget, FakeClock]]:
    clock = FakeClock(start=0.0)
    target = ScriptedTarget()
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        controller = Controller(
            registry,
            ArtifactStore(tmp_path / "artifacts"),
            tmp_path,
            target=target,
            meter=Meter(now=clock.now),
            clock=clock,
        )
        yield controller, target, clock


def scaled(controller: Controller) -> list[str]:
    return [
        f"{e.details['previous']} -> {e.details['instances']}: {e.details['reason']}"
        for e in controller.state.events("echo")
        if e.kind == "scaled" and e.details.get("by") == "autoscaler"
    ]


def test_load_scales_out_then_idleness_to_zero_and_a_request_wakes_it(
    parts: tuple[Controller, ScriptedTarget, FakeClock],
) -> None:
    controller, target, clock = parts

    async def scenario() -> None:
        spec = AppSpec(name="echo", kind="echo", options={"word": "hi"}, autoscaling=POLICY)
        await controller.push(spec, None, 9, lambda _m: None)
        assert target.running["echo"][1] == 4  # a push starts within max-instances
        await controller.scale("echo", 1)
        await controller.start()
        await settle()  # the autoscaling loop waits on the clock
        try:
            tokens = [controller.meter.begin("echo") for _ in range(11)]
            await clock.advance(12)
            assert target.running["echo"][1] == 3
            assert scaled(controller) == ["1 -> 3: ongoing requests 11 per instance > 4 for 10 s"]
            assert controller.state.app("echo").instances == 3  # kept for a platform restart
            for token in tokens:
                controller.meter.end(token, 1, 200, 0.01)
            await clock.advance(200)
            assert target.running["echo"][1] == 0
            assert scaled(controller)[1:] == [
                "3 -> 1: ongoing requests 0 per instance < 4 for 28 s",
                "1 -> 0: no request for 120 s",
            ]
            # The router asks for an instance when a request finds none.
            woken = controller.autoscaling.wake("echo")
            assert woken is not None
            assert await woken is True
            assert target.running["echo"][1] == 1
            assert scaled(controller)[-1] == "0 -> 1: a request arrived while it had no instance"
        finally:
            await controller.close()

    asyncio.run(scenario())


def test_an_app_in_crash_backoff_is_not_scaled_out_and_others_are_never_woken(
    parts: tuple[Controller, ScriptedTarget, FakeClock],
) -> None:
    controller, target, clock = parts

    async def scenario() -> None:
        spec = AppSpec(name="echo", kind="echo", options={"word": "hi"}, autoscaling=POLICY)
        plain = AppSpec(name="plain", kind="echo", options={"word": "hi"}, routes=())
        await controller.push(spec, None, 1, lambda _m: None)
        await controller.push(plain, None, 1, lambda _m: None)
        crashed = InstanceStatus(0, 1, "CRASHED", False, 0.0, "127.0.0.1", None, None, 3)
        target.statuses["echo"] = [crashed]
        await controller.start()
        await settle()  # the autoscaling loop waits on the clock
        try:
            for _ in range(20):
                controller.meter.begin("echo")
            await clock.advance(60)
            assert target.running["echo"][1] == 1
            assert scaled(controller) == []
            assert controller.autoscaling.wake("plain") is None  # no policy: 503 at once
        finally:
            await controller.close()

    asyncio.run(scenario())
