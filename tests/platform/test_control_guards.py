"""The control API's HTTP limits: request-head timeout, connections per client, allowed hosts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.server.http import api_config
from tests.http_clients import exchange, hold, release

SLOW = 30.0


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def run(scenario: Callable[[int], Awaitable[None]], **options: Any) -> None:
    """Serve a tiny app through the control API's uvicorn configuration on a free port."""
    import uvicorn

    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections wait in the backlog until uvicorn has started
        server = uvicorn.Server(api_config(_hello, hosts=["127.0.0.1"], **options))
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            await asyncio.wait_for(scenario(sock.getsockname()[1]), SLOW)
        finally:
            server.should_exit = True
            await serving
            sock.close()

    asyncio.run(main())


async def raw(port: int, data: bytes) -> bytes:
    return await exchange("127.0.0.1", port, data)


def _get(host: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host


def test_only_loopback_names_and_its_address_are_answered() -> None:
    async def scenario(port: int) -> None:
        rebound = await raw(port, _get(b"evil.example"))
        assert rebound.startswith(b"HTTP/1.1 421")
        assert b"does not answer for host 'evil.example'" in rebound
        for host in (b"localhost:7070", b"127.0.0.1:7070", b"[::1]:7070", b"api.localhost"):
            assert (await raw(port, _get(host))).startswith(b"HTTP/1.1 200"), host

    run(scenario)


def test_a_half_sent_or_silent_connection_is_closed() -> None:
    async def scenario(port: int) -> None:
        half = await raw(port, b"GET / HTTP/1.1\r\nHost: loc")
        assert half.startswith(b"HTTP/1.1 408")
        assert b"no complete request head within 0.2 s" in half
        silent = await raw(port, b"")
        assert silent.startswith(b"HTTP/1.1 408")

    run(scenario, header_timeout=0.2)


def test_connections_per_client_address_are_bounded() -> None:
    async def scenario(port: int) -> None:
        held = await hold("127.0.0.1", port, 2, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            refused = await raw(port, _get(b"localhost"))
            assert refused.startswith(b"HTTP/1.1 429")
            assert b"too many connections from 127.0.0.1 (at most 2 at a time)" in refused
        finally:
            await release(held)

    run(scenario, max_connections_per_client=2)
