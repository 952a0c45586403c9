"""The platform's small parts on their own: route table, log buffer, health-check definitions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import conveyor.platform
from conveyor.errors import UsageError
from conveyor.platform import HealthCheck, LogBuffer, PlatformError, Route, RouteTable
from conveyor.platform.supervisor import Event


def test_public_surface_is_sorted_and_importable() -> None:
    names = conveyor.platform.__all__
    # isort's order, as ruff keeps it: CONSTANTS, then Classes and functions alphabetically.
    assert names == sorted(names, key=lambda name: (not name.isupper(), name))
    for name in names:
        assert getattr(conveyor.platform, name) is not None


def table() -> RouteTable:
    routes = RouteTable()
    routes.add_route(Route("iris", path="/iris"))
    routes.add_route(Route("iris-v2", path="/iris/v2", strip_prefix=True))
    routes.add_route(Route("iris", host="iris.localhost"))
    routes.add_route(Route("admin", host="iris.localhost", path="/admin"))
    return routes


def test_longest_prefix_and_host_win() -> None:
    routes = table()
    match = routes.match("127.0.0.1:8080", "/iris/v2/predict?x=1")
    assert match is not None
    assert (match.app, match.path) == ("iris-v2", "/predict?x=1")
    match = routes.match(None, "/iris")
    assert match is not None
    assert (match.app, match.path) == ("iris", "/iris")
    match = routes.match("IRIS.localhost:8080", "/admin/users")
    assert match is not None
    assert match.app == "admin"
    match = routes.match("iris.localhost", "/anything")
    assert match is not None
    assert match.app == "iris"
    assert routes.match("other.localhost", "/irises") is None
    assert routes.match(None, "/") is None


def test_a_taken_route_and_malformed_routes_are_refused() -> None:
    routes = table()
    with pytest.raises(PlatformError, match="route /iris is already taken by app 'iris'"):
        routes.add_route(Route("mallory", path="/iris"))
    routes.add_route(Route("iris", path="/iris"))  # the same app again is fine
    with pytest.raises(UsageError, match="must start with '/'"):
        Route("x", path="iris")
    with pytest.raises(UsageError, match="needs a host, a path or both"):
        Route("x")
    with pytest.raises(UsageError, match="lower case"):
        Route("x", host="Iris.localhost")


def test_round_robin_follows_readiness_events() -> None:
    routes = table()

    def event(kind: str, index: int, port: int = 0) -> Event:
        return Event(kind, "iris", index, 0.0, {"host": "127.0.0.1", "port": port})

    routes.apply(event("ready", 0, 9000))
    routes.apply(event("ready", 1, 9001))
    firsts = [routes.pick("iris")[0].port for _ in range(4)]
    assert firsts == [9000, 9001, 9000, 9001]
    routes.apply(event("unready", 0))
    assert [b.port for b in routes.pick("iris")] == [9001]
    routes.apply(event("crashed", 1))
    assert routes.pick("iris") == []
    routes.apply(event("ready", 1, 9005))
    assert [b.port for b in routes.pick("iris")] == [9005]


def test_log_buffer_rotates_but_says_what_a_follower_missed() -> None:
    async def scenario() -> None:
        buffer = LogBuffer(capacity=3)
        for n in range(5):
            buffer.append(n % 2, "stdout", f"line {n}", at=0.0)
        assert [ln.text for ln in buffer.recent()] == ["line 2", "line 3", "line 4"]
        assert [ln.text for ln in buffer.recent(index=1)] == ["line 3"]
        lines = buffer.since(0)
        assert lines[0].stream == "gap"
        assert lines[0].text == "2 lines rotated out before read"
        assert [ln.text for ln in lines[1:]] == ["line 2", "line 3", "line 4"]

        follower = buffer.follow()
        pending = asyncio.ensure_future(follower.__anext__())
        await asyncio.sleep(0)
        assert not pending.done()
        buffer.append(0, "stderr", "fresh", at=0.0)
        line = await asyncio.wait_for(pending, 5)
        assert line.format() == "[0/stderr] fresh"
        for n in range(3):
            buffer.append(0, "stdout", f"more {n}", at=0.0)
        assert [(await follower.__anext__()).text for _ in range(3)] == [
            "more 0",
            "more 1",
            "more 2",
        ]
        # A closed buffer (app deleted, platform stopping) ends its followers after the last line.
        buffer.append(0, "stdout", "last", at=0.0)
        buffer.close()
        assert [line.text async for line in follower] == ["last"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "tcp"}, "type 'tcp' is unknown; use port, process or http"),
        ({"endpoint": "health"}, "must be a path starting with '/'"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"failures": 0}, "failures must be at least 1"),
    ],
)
def test_bad_health_checks_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        HealthCheck(**options)  # type: ignore[arg-type]


def test_log_files_rotate_by_size_and_give_their_tail_back(tmp_path: Path) -> None:
    from conveyor.platform.logs import LogFiles, LogLine

    files = LogFiles(tmp_path, max_bytes=1000, keep=2)
    write = files.writer("app")
    for n in range(200):
        write(LogLine(n, n % 2, "stdout", f"line {n:03d} " + "x" * 40, 1_700_000_000.0 + n))
    files.close()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["app.log", "app.log.1", "app.log.2"]  # bounded: older files deleted
    assert all(p.stat().st_size < 1100 for p in tmp_path.iterdir())
    tail = files.tail("app", 3)
    assert [(i, s, t[:8]) for i, s, t, _ in tail] == [
        (1, "stdout", "line 197"),
        (0, "stdout", "line 198"),
        (1, "stdout", "line 199"),
    ]
    assert tail[-1][3] == 1_700_000_199.0

    restored = LogBuffer()
    restored.restore(tail)
    assert [line.text[:8] for line in restored.recent()] == ["line 197", "line 198", "line 199"]
