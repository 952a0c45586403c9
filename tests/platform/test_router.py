"""Real HTTP through the router to real instance processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.platform import InstanceSpec, Supervisor
from conveyor.platform.router import AccessRecord, Router
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.supervisor import Event, free_port
from tests.http_clients import exchange, hold, release
from tests.platform.fakes import Events

pytestmark = pytest.mark.slow

HELLO = (sys.executable, str(Path(__file__).parent / "apps" / "hello.py"))
SLOW = 60.0


class Platform:
    """Two apps behind a router: alpha (2 instances, host and path routes), beta (1, stripped)."""

    def __init__(self, response_timeout: float = SLOW) -> None:
        self.table = RouteTable()
        self.events = Events()
        self.access: list[AccessRecord] = []
        self.supervisor = Supervisor(events=self.record, base_env={"PATH": os.environ["PATH"]})
        self.router = Router(
            self.table, access=self.access.append, response_timeout=response_timeout
        )
        self.url = ""

    def record(self, event: Event) -> None:
        self.table.apply(event)
        self.events(event)

    async def start(self) -> None:
        self.table.add_route(Route("alpha", host="alpha.localhost"))
        self.table.add_route(Route("alpha", path="/alpha"))
        self.table.add_route(Route("beta", path="/beta", strip_prefix=True))
        self.table.add_route(Route("gamma", path="/gamma"))
        for app, count in [("alpha", 2), ("beta", 1)]:
            for index in range(count):
                self.supervisor.start(InstanceSpec(app=app, command=HELLO), index)
        for _ in range(3):
            await self.events.next("ready", deadline=SLOW)
        host, port = await self.router.start()
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        await self.router.close()
        await self.supervisor.stop_all()


def run(
    scenario: Callable[[Platform, httpx.AsyncClient], Awaitable[None]],
    response_timeout: float = SLOW,
) -> None:
    async def main() -> None:
        platform = Platform(response_timeout)
        try:
            await asyncio.wait_for(platform.start(), SLOW)
            async with httpx.AsyncClient(base_url=platform.url, timeout=SLOW) as client:
                await asyncio.wait_for(scenario(platform, client), SLOW * 2)
        finally:
            await platform.stop()

    asyncio.run(main())


def test_routes_by_host_and_by_path_prefix() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        by_host = (await client.get("/some/where?x=1", headers={"Host": "alpha.localhost"})).json()
        assert by_host["path"] == "/some/where?x=1"
        kept = (await client.get("/alpha/predict")).json()
        assert kept["path"] == "/alpha/predict"
        stripped = (await client.get("/beta/predict?y=2")).json()
        assert stripped["path"] == "/predict?y=2"
        assert stripped["headers"]["x-forwarded-prefix"] == "/beta"
        assert (await client.get("/betamax")).status_code == 404

    run(scenario)


def test_round_robin_spreads_over_ready_instances() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        served = [(await client.get("/alpha/")).json()["index"] for _ in range(6)]
        assert sorted(served) == ["0", "0", "0", "1", "1", "1"]

    run(scenario)


def test_unreachable_instance_is_skipped_by_retrying_another() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        platform.table.set_backend("alpha", "alpha/dead", "127.0.0.1", free_port())
        responses = [await client.get("/alpha/") for _ in range(9)]
        assert [r.status_code for r in responses] == [200] * 9

    run(scenario)


def test_kill_9_of_an_instance_loses_no_request() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        victim = (await client.get("/alpha/")).json()["pid"]
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):
            response = await client.get("/alpha/")
            assert response.status_code == 200, response.text
        await platform.events.next("crashed", deadline=SLOW)
        await platform.events.next("ready", deadline=SLOW)
        pids = {(await client.get("/alpha/")).json()["pid"] for _ in range(4)}
        assert len(pids) == 2
        assert victim not in pids

    run(scenario)


def test_router_errors_are_json() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        missing = await client.get("/nowhere")
        assert missing.status_code == 404
        assert "no app is routed" in missing.json()["error"]
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
        idle = await client.get("/gamma/")
        assert idle.status_code == 503
        assert idle.json()["error"] == "app 'gamma' has no ready instance"
        platform.table.set_backend("gamma", "gamma/0", "127.0.0.1", free_port())
        down = await client.get("/gamma/")
        assert down.status_code == 502
        assert down.json()["tried"] == ["gamma/0"]
        assert "could not connect" in down.json()["error"]

    run(scenario)


def test_a_slow_instance_gives_504() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        slow = await client.get("/alpha/sleep?s=5")
        assert slow.status_code == 504
        assert "did not answer within 1 s" in slow.json()["error"]
        assert (await client.get("/alpha/")).status_code == 200

    run(scenario, response_timeout=1.0)


def test_large_bodies_stream_both_ways() -> None:
    size = 32 * 1024 * 1024

    async def upload() -> AsyncIterator[bytes]:
        block = b"y" * 1024 * 1024
        for _ in range(size // len(block)):
            yield block

    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        received = 0
        async with client.stream("GET", f"/alpha/bytes?n={size}") as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received += len(chunk)
        assert received == size
        echoed = await client.post("/alpha/echo", content=upload())
        assert echoed.headers["x-body-length"] == str(size)
        assert len(echoed.content) == size
        sized = await client.post("/alpha/echo", content=b"z" * 100_000)
        assert sized.content == b"z" * 100_000

    run(scenario)


def test_forwarding_headers_request_id_and_hop_by_hop() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/alpha/",
            headers={
                "X-Forwarded-For": "203.0.113.9",
                "X-Request-Id": "abc-123",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "for the router only",
                "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic eA==",
                "TE": "trailers",
                "X-Kept": "yes",
            },
        )
        seen = response.json()["headers"]
        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"].startswith("127.0.0.1:")
        assert seen["x-request-id"] == "abc-123"
        assert response.headers["x-request-id"] == "abc-123"
        assert seen["x-kept"] == "yes"
        for hop in ("x-secret", "keep-alive", "proxy-authorization", "te"):
            assert hop not in seen
        generated = await client.get("/alpha/")
        request_id = generated.json()["headers"]["x-request-id"]
        assert len(request_id) == 32
        assert generated.headers["x-request-id"] == request_id
        head = await client.head("/alpha/")
        assert head.status_code == 200
        assert (await client.get("/alpha/")).status_code == 200

    run(scenario)


def test_access_log_separates_app_time_from_router_time() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        await client.get("/alpha/", headers={"X-Request-Id": "r-1"})
        await client.get("/nowhere")
        served, missing = platform.access[-2:]
        assert (served.status, served.app, served.request_id) == (200, "alpha", "r-1")
        assert served.instance in ("alpha/0", "alpha/1")
        line = served.format()
        assert "app_ms=" in line
        assert "router_ms=" in line
        assert '"GET /alpha/"' in line
        assert (missing.status, missing.app, missing.app_ms) == (404, "", 0.0)

    run(scenario)


async def raw(url: str, data: bytes) -> bytes:
    """Send bytes to the router as they are; everything it answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    return await exchange(host, int(port), data)


def test_raw_http_pipelining_http10_and_malformed_requests() -> None:
    async def scenario(platform: Platform, client: httpx.AsyncClient) -> None:
        pipelined = await raw(
            platform.url,
            b"GET /alpha/one HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"POST /alpha/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /beta/three HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        assert pipelined.count(b"HTTP/1.1 200 OK") == 3
        first, second, third = (
            pipelined.index(b'"/alpha/one"'),
            pipelined.index(b"\r\n\r\nhello"),
            pipelined.index(b'"/three"'),
        )
        assert first < second < third

        old = await raw(platform.url, b"GET /alpha/bytes?n=100000 HTTP/1.0\r\n\r\n")
        head, _, body = old.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding" not in head.lower()
        assert body == b"x" * 100000

        chunked = await raw(
            platform.url,
            b"POST /alpha/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        )
        assert chunked.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
        assert chunked.endswith(b"abcdefg")

        garbage = await raw(platform.url, b"NOT HTTP AT ALL\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400")
        assert b'"malformed HTTP request' in garbage

        upgrade = await raw(
            platform.url,
            b"GET /alpha/ HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n",
        )
        assert upgrade.startswith(b"HTTP/1.1 501")

        huge = await raw(
            platform.url, b"GET /alpha/ HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        )
        assert huge.startswith(b"HTTP/1.1 431")

    run(scenario)


def run_alone(scenario: Callable[[str], Awaitable[None]], **options: Any) -> None:
    """A router and no instance: app ``solo`` at /solo, app ``named`` at host named.example."""

    async def main() -> None:
        table = RouteTable()
        table.add_route(Route("solo", path="/solo"))
        table.add_route(Route("named", host="named.example"))
        router = Router(table, **options)
        host, port = await router.start()
        try:
            await asyncio.wait_for(scenario(f"http://{host}:{port}"), SLOW)
        finally:
            await router.close()

    asyncio.run(main())


def _get(path: str, host: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path.encode(), host)


def test_only_hosts_the_router_is_known_by_are_answered() -> None:
    async def scenario(url: str) -> None:
        rebound = await raw(url, _get("/solo/", b"evil.example:8080"))
        assert rebound.startswith(b"HTTP/1.1 421")
        assert b"does not answer for host 'evil.example:8080'" in rebound
        for host in (b"localhost:80", b"127.0.0.1", b"[::1]:8080", b"solo.localhost"):
            # Known names reach the route: 503, the app has no instance.
            assert (await raw(url, _get("/solo/", host))).startswith(b"HTTP/1.1 503"), host
        assert b"app 'named'" in await raw(url, _get("/", b"named.example"))

    run_alone(scenario)


def test_a_slow_or_silent_client_is_disconnected() -> None:
    async def scenario(url: str) -> None:
        half = await raw(url, b"GET /solo/ HTTP/1.1\r\nHost: local")
        assert half.startswith(b"HTTP/1.1 408")
        assert b"request head was not received within 0.2 s" in half
        assert await raw(url, b"") == b""  # a connection that says nothing is closed

    run_alone(scenario, header_timeout=0.2, idle_timeout=0.2)


def test_connections_per_client_address_are_bounded() -> None:
    async def scenario(url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        held = await hold(host, int(port), 2, b"GET /solo/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            refused = await raw(url, _get("/solo/", b"localhost"))
            assert refused.startswith(b"HTTP/1.1 429")
            assert b"too many connections from 127.0.0.1 (at most 2 at a time)" in refused
        finally:
            await release(held)

    run_alone(scenario, max_connections_per_client=2)


def test_a_content_length_that_is_not_a_byte_count_is_refused() -> None:
    async def scenario(url: str) -> None:
        for length in (
            b"Content-Length: -1",
            b"Content-Length: 2x",
            b"Content-Length: 2\r\nContent-Length: 3",
        ):
            answer = await raw(
                url, b"POST /solo/ HTTP/1.1\r\nHost: localhost\r\n%s\r\n\r\n{}" % length
            )
            assert answer.startswith(b"HTTP/1.1 400"), length
            assert b"Content-Length" in answer

    run_alone(scenario)
