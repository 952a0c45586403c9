"""The supervisor's lifecycle, backoff and health logic, played on a fake clock.

No test here sleeps: time moves only when FakeClock.advance is called, and
processes and health probes are scripted stand-ins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from conveyor.platform import (
    CrashBackoff,
    FakeClock,
    HealthCheck,
    IllegalTransition,
    Instance,
    InstanceSpec,
    InstanceState,
    PlatformError,
    Supervisor,
)
from conveyor.platform.instances import transition
from conveyor.platform.isolation import Sandbox
from tests.platform.fakes import Events, FakeProbe, FakeSpawner

SPEC = InstanceSpec(app="iris", command=("serve",), env={"LOG_LEVEL": "debug"})


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.spawner = FakeSpawner()
        self.probe = FakeProbe()
        self.events = Events()
        ports = itertools.count(20000)
        self.supervisor = Supervisor(
            clock=self.clock,
            spawner=self.spawner,
            probe=self.probe,
            events=self.events,
            port_allocator=lambda: next(ports),
            base_env={"PATH": "/usr/bin"},
        )


def state(instance: Instance) -> InstanceState:
    """Read the state afresh (it changes behind mypy's back while awaiting)."""
    return instance.state


def play(scenario: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        world = World()
        try:
            await scenario(world)
        finally:
            for inst in world.supervisor.instances():
                inst.spec = InstanceSpec(app=inst.spec.app, command=(), grace_period=0.001)
            stopping = asyncio.ensure_future(world.supervisor.stop_all())
            while not stopping.done():
                await world.clock.advance(1)
            await stopping

    asyncio.run(main())


def test_illegal_transition_says_what_happened() -> None:
    with pytest.raises(IllegalTransition, match="iris/2 cannot go from DOWN to RUNNING"):
        transition(InstanceState.DOWN, InstanceState.RUNNING, where="iris/2")


def test_backoff_follows_cloud_foundry_schedule() -> None:
    backoff = CrashBackoff()
    assert [backoff.delay(n) for n in range(1, 10)] == [0, 0, 0, 30, 60, 120, 240, 480, 960]
    assert backoff.delay(40) == 16 * 60
    assert backoff.count_after_crash(7, ran_for=299) == 8
    assert backoff.count_after_crash(7, ran_for=300) == 1


def test_instance_starts_with_port_index_and_user_env() -> None:
    async def scenario(w: World) -> None:
        w.probe.default = False
        instance = w.supervisor.start(SPEC, 3)
        started = await w.events.next("started")
        assert state(instance) is InstanceState.STARTING
        env = w.spawner.latest.env
        assert env["PORT"] == str(started.details["port"]) == str(instance.port)
        assert env["CONVEYOR_INSTANCE_INDEX"] == "3"
        assert env["LOG_LEVEL"] == "debug"
        assert env["PATH"] == "/usr/bin"
        await w.clock.advance(5)
        assert state(instance) is InstanceState.STARTING
        assert not instance.ready
        w.probe.default = True
        await w.clock.advance(1)
        await w.events.next("running")
        ready = await w.events.next("ready")
        assert ready.details["port"] == instance.port
        assert state(instance) is InstanceState.RUNNING
        assert instance.ready

    play(scenario)


def test_starting_twice_is_refused() -> None:
    async def scenario(w: World) -> None:
        w.supervisor.start(SPEC, 0)
        await w.events.next("running")
        with pytest.raises(PlatformError, match="already RUNNING"):
            w.supervisor.start(SPEC, 0)

    play(scenario)


def test_crashes_restart_three_times_at_once_then_back_off() -> None:
    async def scenario(w: World) -> None:
        instance = w.supervisor.start(SPEC, 0)
        for crash in range(1, 4):
            await w.events.next("running")
            w.spawner.latest.exit(1)
            event = await w.events.next("crashed")
            assert event.details["crashes"] == crash
            assert event.details["restart_in"] == 0
            await w.events.next("restarted")
        await w.events.next("running")
        for crash, wait in [(4, 30), (5, 60), (6, 120)]:
            w.spawner.latest.exit(1)
            event = await w.events.next("crashed")
            assert event.details["crashes"] == crash
            assert event.details["restart_in"] == wait
            spawned = len(w.spawner.processes)
            await w.clock.advance(wait - 1)
            assert state(instance) is InstanceState.CRASHED
            assert len(w.spawner.processes) == spawned
            await w.clock.advance(1)
            await w.events.next("restarted")
            await w.events.next("running")
        assert instance.restarts == 6

    play(scenario)


def test_crash_count_resets_after_five_minutes_running() -> None:
    async def scenario(w: World) -> None:
        w.supervisor.start(SPEC, 0)
        for _ in range(5):
            await w.events.next("running")
            w.spawner.latest.exit(1)
            event = await w.events.next("crashed")
            await w.clock.advance(event.details["restart_in"])
        await w.events.next("running")
        await w.clock.advance(301)
        w.spawner.latest.exit(1)
        event = await w.events.next("crashed")
        assert event.details["crashes"] == 1
        assert event.details["restart_in"] == 0
        await w.events.next("restarted")

    play(scenario)


def test_crash_event_carries_exit_status_and_last_lines() -> None:
    async def scenario(w: World) -> None:
        instance = w.supervisor.start(SPEC, 1)
        await w.events.next("running")
        process = w.spawner.latest
        for n in range(30):
            process.say(f"line {n}")
        process.say("Traceback: boom", "stderr")
        process.exit(3)
        event = await w.events.next("crashed")
        assert event.details["exit_status"] == 3
        assert event.details["reason"] == "exited with status 3"
        lines = event.details["last_lines"]
        assert lines[-1] == "[1/stderr] Traceback: boom"
        assert "[1/stdout] line 29" in lines
        assert instance.last_crash is not None
        assert instance.last_crash["exit_status"] == 3

    play(scenario)


def test_the_spawner_says_what_killed_an_instance_and_how_it_was_isolated() -> None:
    sandbox = Sandbox(app="iris", read_only=(Path("/d/venv"),), memory_limit=100 << 20)

    async def scenario(w: World) -> None:
        instance = w.supervisor.start(dataclasses.replace(SPEC, sandbox=sandbox), 0)
        started = await w.events.next("started")
        assert started.details["isolation"] == "fake"
        assert instance.isolation == "fake"
        await w.events.next("running")
        process = w.spawner.latest
        assert process.sandbox == sandbox  # what the instance may see reaches the spawner
        process.reason = "memory limit 100 MiB exceeded (killed by the kernel in its memory cgroup)"
        process.exit(-9)
        crashed = await w.events.next("crashed")
        assert crashed.details["reason"] == process.reason  # not "exited with status -9"

    play(scenario)


def test_missing_the_startup_deadline_is_a_crash() -> None:
    async def scenario(w: World) -> None:
        w.probe.default = False
        spec = InstanceSpec(app="slow", command=("x",), health=HealthCheck(timeout=60))
        w.supervisor.start(spec, 0)
        await w.events.next("started")
        await w.clock.advance(59)
        assert w.spawner.latest.returncode is None
        await w.clock.advance(2)
        failed = await w.events.next("health-failed")
        assert failed.details["phase"] == "startup"
        crashed = await w.events.next("crashed")
        assert "within 60 s" in crashed.details["reason"]
        assert w.spawner.processes[0].signals == [signal.SIGKILL]

    play(scenario)


def test_liveness_failure_restarts_the_instance() -> None:
    async def scenario(w: World) -> None:
        spec = InstanceSpec(app="web", command=("x",), health=HealthCheck("http", "/health"))
        w.supervisor.start(spec, 0)
        await w.events.next("running")
        w.probe.answers["/health"] = False
        await w.clock.advance(10)
        failed = await w.events.next("health-failed")
        assert failed.details["phase"] == "liveness"
        crashed = await w.events.next("crashed")
        assert "liveness" in crashed.details["reason"]
        await w.events.next("restarted")
        w.probe.answers["/health"] = True
        await w.clock.advance(1)
        await w.events.next("running")

    play(scenario)


def test_readiness_failure_leaves_routing_without_restart() -> None:
    async def scenario(w: World) -> None:
        spec = InstanceSpec(
            app="web",
            command=("x",),
            readiness=HealthCheck("http", "/ready", interval=5),
        )
        instance = w.supervisor.start(spec, 0)
        await w.events.next("ready")
        w.probe.answers["/ready"] = False
        await w.clock.advance(5)
        await w.events.next("unready")
        assert state(instance) is InstanceState.RUNNING
        assert not instance.ready
        w.probe.answers["/ready"] = True
        await w.clock.advance(5)
        await w.events.next("ready")
        assert len(w.spawner.processes) == 1
        assert "crashed" not in w.events.kinds()

    play(scenario)


def test_memory_breach_is_the_stated_cause() -> None:
    async def scenario(w: World) -> None:
        spec = InstanceSpec(app="big", command=("x",), memory_limit=100 * 1024 * 1024)
        w.supervisor.start(spec, 0)
        await w.events.next("running")
        w.spawner.latest.rss = 150 * 1024 * 1024
        await w.clock.advance(1)
        crashed = await w.events.next("crashed")
        assert "memory limit of 100 MiB" in crashed.details["reason"]
        assert "150 MiB" in crashed.details["reason"]

    play(scenario)


def test_stop_sends_sigterm_then_sigkill_after_grace() -> None:
    async def scenario(w: World) -> None:
        spec = InstanceSpec(app="stubborn", command=("x",), grace_period=10)
        instance = w.supervisor.start(spec, 0)
        await w.events.next("running")
        process = w.spawner.latest
        process.ignore_sigterm = True
        stopping = asyncio.ensure_future(w.supervisor.stop("stubborn", 0))
        await w.events.next("stopping")
        assert state(instance) is InstanceState.STOPPING
        assert not instance.ready
        assert process.signals == [signal.SIGTERM]
        await w.clock.advance(9)
        assert process.signals == [signal.SIGTERM]
        await w.clock.advance(1)
        stopped = await w.events.next("stopped")
        await stopping
        assert stopped.details["killed"] is True
        assert process.signals == [signal.SIGTERM, signal.SIGKILL]
        assert state(instance) is InstanceState.DOWN

    play(scenario)


def test_graceful_stop_needs_no_sigkill() -> None:
    async def scenario(w: World) -> None:
        instance = w.supervisor.start(SPEC, 0)
        await w.events.next("running")
        await w.supervisor.stop("iris", 0)
        stopped = await w.events.next("stopped")
        assert stopped.details["killed"] is False
        assert w.spawner.latest.signals == [signal.SIGTERM]
        assert state(instance) is InstanceState.DOWN
        assert "unready" in w.events.kinds()

    play(scenario)


def test_stop_during_backoff_goes_down_without_restart() -> None:
    async def scenario(w: World) -> None:
        instance = w.supervisor.start(SPEC, 0)
        for _ in range(4):
            await w.events.next("running")
            w.spawner.latest.exit(1)
            event = await w.events.next("crashed")
        assert event.details["restart_in"] == 30
        spawned = len(w.spawner.processes)
        await w.supervisor.stop("iris", 0)
        assert state(instance) is InstanceState.DOWN
        await w.clock.advance(60)
        assert len(w.spawner.processes) == spawned

    play(scenario)


def test_a_command_that_cannot_start_crashes_with_the_reason() -> None:
    from conveyor.platform.errors import SpawnError

    async def scenario(w: World) -> None:
        def refuse(process: object) -> None:
            raise SpawnError("cannot start 'nope': No such file or directory")

        w.spawner.on_spawn = refuse
        instance = w.supervisor.start(SPEC, 0)
        crashed = await w.events.next("crashed")
        assert "No such file" in crashed.details["reason"]
        assert crashed.details["exit_status"] is None
        for _ in range(2):
            await w.events.next("crashed")
        crashed = await w.events.next("crashed")
        assert crashed.details["restart_in"] == 30
        assert state(instance) is InstanceState.CRASHED

    play(scenario)
