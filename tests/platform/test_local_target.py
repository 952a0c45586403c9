"""The local deployment target on its own: a release deployed, rolled, undeployed; a one-off run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from conveyor.platform.errors import DeployError
from conveyor.platform.health import HealthCheck
from conveyor.platform.local import LocalTarget
from conveyor.platform.routes import Route
from conveyor.platform.supervisor import Event
from conveyor.platform.target import Release

pytestmark = pytest.mark.slow

HELLO = (sys.executable, str(Path(__file__).parent / "apps" / "hello.py"))
SLOW = 60.0


class Book:
    """The processes the target writes down, kept in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[int, int]] = {}

    def record_process(self, key: str, pid: int, start_ticks: int) -> None:
        self.rows[key] = (pid, start_ticks)

    def forget_process(self, key: str) -> None:
        self.rows.pop(key, None)

    def processes(self) -> list[tuple[str, int, int]]:
        return [(key, pid, ticks) for key, (pid, ticks) in self.rows.items()]


def release(revision: int, command: tuple[str, ...] = HELLO) -> Release:
    return Release(
        app="hello",
        revision=revision,
        command=command,
        health=HealthCheck("http", "/health", timeout=SLOW),
        routes=(Route("hello", path="/hello"),),
    )


def run(scenario: Callable[[LocalTarget, list[Event]], Awaitable[None]]) -> None:
    async def main() -> None:
        events: list[Event] = []
        target = LocalTarget(Book(), drain=0, base_env={"PATH": os.environ["PATH"]})
        target.watch(events.append)
        await target.start()
        try:
            await asyncio.wait_for(scenario(target, events), SLOW * 2)
        finally:
            await target.close()

    asyncio.run(main())


def test_a_rolling_deploy_then_undeploy() -> None:
    async def scenario(target: LocalTarget, events: list[Event]) -> None:
        await target.deploy(release(1), 2, lambda _m: None)
        assert [(s.revision, s.state, s.ready) for s in target.status("hello")] == [
            (1, "RUNNING", True),
            (1, "RUNNING", True),
        ]
        assert target.route_owner(Route("other", path="/hello")) == "hello"
        assert target.book.processes()  # written down, for a platform that dies
        await target.deploy(release(2), 1, lambda _m: None)
        assert [(s.revision, s.state) for s in target.status("hello")] == [(2, "RUNNING")]
        port = target.status("hello")[0].port
        async with httpx.AsyncClient(timeout=SLOW) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        await target.undeploy("hello")
        assert (target.status("hello"), target.routes("hello")) == ([], [])
        assert {"started", "ready", "stopped"} <= {e.kind for e in events}

    run(scenario)


def test_a_release_that_never_gets_healthy_leaves_the_old_one_running() -> None:
    async def scenario(target: LocalTarget, _events: list[Event]) -> None:
        await target.deploy(release(1), 1, lambda _m: None)
        broken = release(2, (sys.executable, "-c", "print('no luck'); exit(4)"))
        with pytest.raises(DeployError, match="previous revision keeps serving") as caught:
            await target.deploy(broken, 1, lambda _m: None)
        assert "no luck" in str(caught.value)
        assert [(s.revision, s.ready) for s in target.status("hello")] == [(1, True)]

    run(scenario)


def test_a_canary_runs_beside_the_current_revision_until_one_is_kept() -> None:
    async def scenario(target: LocalTarget, _events: list[Event]) -> None:
        await target.deploy(release(1), 2, lambda _m: None)
        broken = release(2, (sys.executable, "-c", "print('no luck'); exit(4)"))
        with pytest.raises(DeployError, match="revision 1 keeps serving"):
            await target.start_canary(broken, 1, lambda _m: None, stable=1, weight=50)
        assert target.table.split("hello") is None
        await target.start_canary(release(3), 1, lambda _m: None, stable=1, weight=50)
        assert sorted((s.revision, s.ready) for s in target.status("hello")) == [
            (1, True),
            (1, True),
            (3, True),
        ]
        firsts = [target.table.pick("hello")[0].revision for _ in range(10)]
        assert firsts.count(3) == firsts.count(1) == 5
        await target.end_canary(release(3))
        assert [(s.revision, s.ready) for s in target.status("hello")] == [(3, True)]
        assert target.table.split("hello") is None

    run(scenario)


def test_a_one_off_process_reports_its_exit_status_and_output(tmp_path: Path) -> None:
    async def scenario(target: LocalTarget, _events: list[Event]) -> None:
        step = Release(
            app="train",
            revision=1,
            command=(sys.executable, "-c", "import os; print(os.getcwd()); exit(3)"),
            cwd=tmp_path,
        )
        done = await target.launch(step)
        assert (done.exit_code, done.lines) == (3, [str(tmp_path)])
        assert [line.text for line in target.logs("train").recent()] == [str(tmp_path)]

    run(scenario)
