"""The router's meter and its hold for apps that scale from zero, against an in-process instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from conveyor.platform.router import Meter, Router
from conveyor.platform.routes import Route, RouteTable
from tests.waiting import eventually_async

DEADLINE = 30.0


async def _instance(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A tiny HTTP instance: /fail answers 500, anything else 200."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status = b"500 Internal Server Error" if b" /fail " in head else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


@asynccontextmanager
async def platform(
    wake: Callable[[str], Awaitable[bool] | None] | None = None, **limits: float
) -> AsyncIterator[tuple[RouteTable, Meter, httpx.AsyncClient, int]]:
    server = await asyncio.start_server(_instance, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    table, meter = RouteTable(), Meter()
    table.add_route(Route("iris", path="/iris", strip_prefix=True))
    router = Router(table, meter=meter, wake=wake, **limits)  # type: ignore[arg-type]
    host, router_port = await router.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{router_port}", timeout=DEADLINE
        ) as c:
            yield table, meter, c, port
    finally:
        await router.close()
        server.close()
        await server.wait_closed()


def test_the_meter_counts_requests_errors_and_latency_per_app_and_revision() -> None:
    async def main() -> None:
        async with platform() as (table, meter, client, port):
            table.set_backend("iris", "iris/3/0", "127.0.0.1", port)
            answers = [(await client.get(p)).status_code for p in ["/iris/a", "/iris/fail"] * 5]
            assert answers == [200, 500] * 5
            app, revision = meter.read("iris", 60), meter.read("iris@3", 60)
            assert (app.requests, app.errors, app.ongoing) == (10, 5, 0)
            assert (revision.requests, revision.errors) == (10, 5)
            assert app.p95_ms is not None
            assert app.p95_ms > 0

    asyncio.run(asyncio.wait_for(main(), DEADLINE))


def test_a_request_for_an_app_scaled_to_zero_waits_for_its_instance_then_is_answered() -> None:
    async def main() -> None:
        started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        asked: list[str] = []

        def wake(app: str) -> Awaitable[bool] | None:
            asked.append(app)
            return started

        async with platform(wake) as (table, meter, client, port):
            pending = [asyncio.ensure_future(client.get("/iris/predict")) for _ in range(3)]
            await eventually_async(
                lambda: meter.read("iris").ongoing == 3, what="three requests held at the router"
            )
            assert not any(p.done() for p in pending)
            table.set_backend("iris", "iris/1/0", "127.0.0.1", port)
            started.set_result(True)
            answers = await asyncio.gather(*pending)
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert asked == ["iris", "iris", "iris"]

    asyncio.run(asyncio.wait_for(main(), DEADLINE))


def test_beyond_the_hold_bound_or_its_wait_the_answer_is_503_with_retry_after() -> None:
    async def main() -> None:
        never: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        async with platform(lambda _app: never, max_held=1, hold_timeout=0.5) as (
            _table,
            meter,
            client,
            _port,
        ):
            first = asyncio.ensure_future(client.get("/iris/predict"))
            await eventually_async(lambda: meter.read("iris").ongoing, what="a request held")
            over = await client.get("/iris/predict")  # the queue is full: refused at once
            assert over.status_code == 503
            late = await first  # held, but no instance came within the bound
            assert late.status_code == 503
            assert late.headers["retry-after"] == "1"
            assert "waited for one to start (at most 0.5 s)" in late.json()["error"]

    asyncio.run(asyncio.wait_for(main(), DEADLINE))


def test_without_a_waker_an_app_without_instances_is_refused_at_once() -> None:
    async def main() -> None:
        async with platform() as (_table, _meter, client, _port):
            answer = await client.get("/iris/predict")
            assert answer.status_code == 503
            assert "retry-after" not in answer.headers

    asyncio.run(asyncio.wait_for(main(), DEADLINE))


def test_the_meter_reads_a_sliding_window_and_a_p95_within_a_bucket() -> None:
    now = [1000.0]
    meter = Meter(now=lambda: now[0])
    for ms in range(1, 101):  # 1 ms .. 100 ms, one each
        meter.end(meter.begin("iris"), 2, 500 if ms > 90 else 200, ms / 1000)
    reading = meter.read("iris@2", window=10)
    assert (reading.requests, reading.errors, reading.rate) == (100, 10, 10.0)
    assert reading.p95_ms is not None
    assert 95 <= reading.p95_ms <= 95 * 1.25
    now[0] += 30  # those requests fall out of a 10 s window, not out of a 60 s one
    assert meter.read("iris", window=10).requests == 0
    assert meter.read("iris", window=60).requests == 100
    assert meter.read("iris").last_active == 1000.0
    meter.forget("iris")
    assert meter.read("iris@2", window=60).requests == 0
