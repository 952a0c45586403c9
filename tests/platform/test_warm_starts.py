"""Warm starts: an instance started from a spare serves, crashes, restarts and stops as before.

The supervisor runs real processes through a :class:`WarmSpawner`; the app is
hello.py behind the same wait ``conveyor serve`` does (apps/warm_hello.py).
The platform end to end, with a scikit-learn model and isolation, is in
test_warm_model_apps.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest

from conveyor.platform import HealthCheck, InstanceSpec, InstanceState, Supervisor
from conveyor.platform.processes import SubprocessSpawner
from conveyor.platform.warm import WarmSpawner, prefork_enabled
from conveyor.serving.warm import FIFO_NAME
from tests.platform.fakes import Events
from tests.waiting import eventually, eventually_async

pytestmark = pytest.mark.slow

WARM = (sys.executable, str(Path(__file__).parent / "apps" / "warm_hello.py"))
SLOW = 60.0


def spec(**env: str) -> InstanceSpec:
    return InstanceSpec(
        app="warm",
        command=WARM,
        env={"CONVEYOR_APP": "warm", "GREETING": "hi", **env},
        health=HealthCheck(type="http", endpoint="/health", timeout=SLOW),
    )


def warm_only(argv: Sequence[str]) -> bool:
    return tuple(argv) == WARM


def run(scenario: Callable[[Supervisor, Events, WarmSpawner], Awaitable[None]]) -> None:
    async def main() -> None:
        events = Events()
        spawner = WarmSpawner(SubprocessSpawner(), warm_only)
        supervisor = Supervisor(
            events=events, spawner=spawner, base_env={"PATH": os.environ["PATH"]}
        )
        try:
            await asyncio.wait_for(scenario(supervisor, events, spawner), SLOW * 2)
        finally:
            await spawner.close()
            await supervisor.stop_all()

    asyncio.run(main())


async def get(port: int | None, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(timeout=SLOW) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


def spare_pid(spawner: WarmSpawner) -> int | None:
    spares = spawner._spares  # what `ps` would show: the one process waiting for the app
    spare = spares.get("warm")
    if spare is None or spare.handle is None or not spare.ready.is_set():
        return None
    return spare.handle.pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count as gone: it was never reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return bool(stat)


def test_the_next_instance_is_the_spare_and_serves_with_its_own_port_and_index() -> None:
    async def scenario(supervisor: Supervisor, events: Events, spawner: WarmSpawner) -> None:
        first = supervisor.start(spec(), 0)
        await events.next("ready", deadline=SLOW)
        assert (await get(first.port)).json()["index"] == "0"
        waiting = await eventually_async(lambda: spare_pid(spawner), what="a ready spare")
        second = supervisor.start(spec(), 1)
        started = await events.next("started", deadline=SLOW)
        assert started.details["pid"] == waiting  # no new process: the spare became it
        await events.next("ready", deadline=SLOW)
        answer = (await get(second.port)).json()
        assert (answer["index"], answer["pid"]) == ("1", waiting)
        assert (await get(second.port, "/env?name=GREETING")).json()["value"] == "hi"
        lines = [line.text for line in supervisor.logs("warm").recent(50, index=1)]
        # What it printed while it waited is in the instance's log, then what it did after.
        assert f"loaded as pid {waiting}" in lines
        assert "activated=True index=1" in lines
        assert f"listening on {second.port}" in lines
        assert not any("conveyor-warm" in line for line in lines)

    run(scenario)


def test_a_crashed_instance_restarts_from_the_next_spare_and_stops_cleanly() -> None:
    async def scenario(supervisor: Supervisor, events: Events, spawner: WarmSpawner) -> None:
        instance = supervisor.start(spec(), 0)
        await events.next("ready", deadline=SLOW)
        first = (await get(instance.port)).json()["pid"]
        waiting = await eventually_async(lambda: spare_pid(spawner), what="a ready spare")
        os.kill(first, signal.SIGKILL)
        crashed = await events.next("crashed", deadline=SLOW)
        assert crashed.details["exit_status"] == -signal.SIGKILL
        restarted = await events.next("restarted", deadline=SLOW)
        assert restarted.details["pid"] == waiting
        await events.next("ready", deadline=SLOW)
        assert (await get(instance.port)).json()["pid"] == waiting
        assert instance.restarts == 1
        refill = await eventually_async(lambda: spare_pid(spawner), what="the next spare")
        await supervisor.stop("warm", 0)
        assert instance.state is InstanceState.DOWN
        stopped = await events.next("stopped", deadline=SLOW)
        assert stopped.details["killed"] is False  # SIGTERM reached it
        await spawner.close()
        for pid in (first, waiting, refill):
            assert not alive(pid), f"process {pid} is left (a zombie or still running)"

    run(scenario)


def test_a_start_that_differs_from_the_spare_starts_cold_and_replaces_it() -> None:
    async def scenario(supervisor: Supervisor, events: Events, spawner: WarmSpawner) -> None:
        supervisor.start(spec(), 0)
        await events.next("ready", deadline=SLOW)
        old = await eventually_async(lambda: spare_pid(spawner), what="a ready spare")
        other = supervisor.start(spec(GREETING="hello"), 1)  # a new revision's environment
        started = await events.next("started", deadline=SLOW)
        assert started.details["pid"] != old
        await events.next("ready", deadline=SLOW)
        assert (await get(other.port, "/env?name=GREETING")).json()["value"] == "hello"
        await eventually_async(lambda: not alive(old), what="the old spare to be stopped")
        new = await eventually_async(lambda: spare_pid(spawner), what="a spare of the new one")
        assert new != old

    run(scenario)


def test_a_spare_that_swapped_its_fifo_for_a_link_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "platform-file"
    victim.write_text("the platform's own\n")

    async def scenario(supervisor: Supervisor, events: Events, spawner: WarmSpawner) -> None:
        supervisor.start(spec(), 0)
        await events.next("ready", deadline=SLOW)
        waiting = await eventually_async(lambda: spare_pid(spawner), what="a ready spare")
        spare = spawner._spares["warm"]
        assert spare.folder is not None
        fifo = spare.folder / FIFO_NAME
        eventually(fifo.exists, what="the spare's FIFO")
        fifo.unlink()
        fifo.symlink_to(victim)
        other = supervisor.start(spec(), 1)
        started = await events.next("started", deadline=SLOW)
        assert started.details["pid"] != waiting  # started cold instead
        await events.next("ready", deadline=SLOW)
        assert (await get(other.port)).json()["index"] == "1"
        assert victim.read_text() == "the platform's own\n"
        await eventually_async(lambda: not alive(waiting), what="the refused spare to stop")

    run(scenario)


def test_prefork_is_on_unless_turned_off() -> None:
    assert prefork_enabled({})
    assert prefork_enabled({"CONVEYOR_PREFORK": "1"})
    for off in ("0", "false", "off", "No"):
        assert not prefork_enabled({"CONVEYOR_PREFORK": off})


@pytest.mark.parametrize(
    "message", [b'{"CONVEYOR_HOME": "/elsewhere"}', b"not json", b'{"PORT": 8080}']
)
def test_a_spare_refuses_an_activation_that_is_not_an_instances_variables(
    tmp_path: Path, message: bytes
) -> None:
    import subprocess

    code = "from conveyor.serving.warm import await_activation; await_activation()"
    spare = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "CONVEYOR_WARM_SPARE": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert spare.stdout is not None
        assert spare.stdout.readline() == b"conveyor-warm: ready\n"
        (tmp_path / FIFO_NAME).write_bytes(message)
        _, err = spare.communicate(timeout=SLOW)
    finally:
        spare.kill()
        spare.wait()
    assert spare.returncode == 2
    assert b"the activation message is not an instance's variables" in err
    assert b"Traceback" not in err
