"""The supervisor with real processes: a tiny HTTP app started, killed, restarted, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from conveyor.platform import HealthCheck, InstanceSpec, InstanceState, Supervisor
from tests.platform.fakes import Events
from tests.waiting import eventually_async

pytestmark = pytest.mark.slow

HELLO = (sys.executable, str(Path(__file__).parent / "apps" / "hello.py"))
#: Real processes on a loaded machine: generous, bounded.
SLOW = 60.0


def hello(app: str = "hello", **options: object) -> InstanceSpec:
    return InstanceSpec(app=app, command=HELLO, env={"GREETING": "hi"}, **options)  # type: ignore[arg-type]


def run(scenario: Callable[[Supervisor, Events], Awaitable[None]]) -> None:
    async def main() -> None:
        events = Events()
        supervisor = Supervisor(events=events, base_env={"PATH": os.environ["PATH"]})
        try:
            await asyncio.wait_for(scenario(supervisor, events), SLOW * 2)
        finally:
            await supervisor.stop_all()

    asyncio.run(main())


async def get(port: int | None, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(timeout=SLOW) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_is_restarted_and_healthy_again() -> None:
    async def scenario(supervisor: Supervisor, events: Events) -> None:
        instance = supervisor.start(hello(), 0)
        await events.next("ready", deadline=SLOW)
        first = (await get(instance.port)).json()
        assert first["index"] == "0"
        os.kill(first["pid"], signal.SIGKILL)
        crashed = await events.next("crashed", deadline=SLOW)
        assert crashed.details["exit_status"] == -signal.SIGKILL
        assert "[0/stdout] listening on" in "\n".join(crashed.details["last_lines"])
        await events.next("restarted", deadline=SLOW)
        await events.next("ready", deadline=SLOW)
        assert instance.state is InstanceState.RUNNING
        second = (await get(instance.port)).json()
        assert second["pid"] != first["pid"]
        assert instance.restarts == 1

    run(scenario)


def test_output_is_captured_per_stream_and_index() -> None:
    async def scenario(supervisor: Supervisor, events: Events) -> None:
        supervisor.start(hello(), 2)
        await events.next("ready", deadline=SLOW)
        buffer = supervisor.logs("hello")
        follower = buffer.follow(0)
        seen: list[str] = []
        async for line in follower:
            seen.append(line.format())
            if line.stream == "stderr":
                break
        assert any(s.startswith("[2/stdout] listening on") for s in seen)
        assert "[2/stderr] a warning on stderr" in seen

    run(scenario)


def test_stop_ends_the_whole_process_group() -> None:
    async def scenario(supervisor: Supervisor, events: Events) -> None:
        instance = supervisor.start(hello(grace_period=5.0), 0)
        await events.next("ready", deadline=SLOW)
        child = (await get(instance.port, "/child")).json()["pid"]
        assert alive(child)
        await supervisor.stop("hello", 0)
        stopped = await events.next("stopped")
        assert stopped.details["killed"] is False
        assert instance.state is InstanceState.DOWN
        # The sleep child was in the instance's group: it got SIGTERM too (then reaped by init).
        await eventually_async(
            lambda: not alive(child) or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z",
            what=f"child {child} of the stopped instance to stop",
            timeout=10,
        )

    run(scenario)


def test_http_health_check_and_memory_limit() -> None:
    async def scenario(supervisor: Supervisor, events: Events) -> None:
        spec = hello(
            "hog",
            health=HealthCheck("http", "/health", timeout=SLOW),
            memory_limit=150 * 1024 * 1024,
            memory_interval=0.05,
        )
        instance = supervisor.start(spec, 0)
        await events.next("ready", deadline=SLOW)
        # The instance may be killed before it answers: either outcome is fine here.
        with contextlib.suppress(httpx.HTTPError):
            await get(instance.port, "/hog?mb=400")
        crashed = await events.next("crashed", deadline=SLOW)
        assert "memory limit of 150 MiB" in crashed.details["reason"]
        await events.next("ready", deadline=SLOW)

    run(scenario)


def test_a_missing_executable_crashes_with_a_clear_reason() -> None:
    async def scenario(supervisor: Supervisor, events: Events) -> None:
        spec = InstanceSpec(app="broken", command=("/nonexistent/conveyor-app",))
        supervisor.start(spec, 0)
        crashed = await events.next("crashed")
        assert "cannot start '/nonexistent/conveyor-app'" in crashed.details["reason"]

    run(scenario)
