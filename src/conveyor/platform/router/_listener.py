"""The router: an asyncio HTTP/1.1 reverse proxy on every request's path to an instance.

For each request it finds the app by ``Host`` (``iris.localhost``) or path
prefix (:mod:`conveyor.platform.routes`), takes the app's ready instances in round-robin
order and tries the next one when a connection cannot be made. Bodies stream
both ways (re-framed as chunked when their length is unknown), connections to
instances are kept alive in a pool, and every failure the router itself
produces is a JSON body: 404 (no route), 503 (no ready instance; an app that
scales from zero has its request held while an instance starts, at most
``max_held`` of them for ``hold_timeout`` s, then 503 with Retry-After), 502
(instances unreachable, or one closed without answering), 504 (no answer in
time), 421 (a ``Host`` it does not answer for), 408 (a request head not sent
within ``header_timeout``) and 429 (too many connections from one address).

Design for throughput, measured (docs/benchmarks.md, "Router overhead"): a
first version built on asyncio streams and coroutines spent ~250 µs of CPU
per request and reached 0.2x of the instance's own throughput. This one is
built on protocols: httptools (llhttp) parses in ``data_received`` callbacks
and bytes are written straight to the other side's transport, so a request
on a warm keep-alive connection costs no coroutine switch at all. Only
opening a new connection to an instance runs as a task. Flow control pauses
reading on one side while the other side's buffer is full, so a slow client
cannot make the router hold a large response in memory.

Not an ASGI app like the rest of Conveyor, deliberately: an ASGI server
would parse the request into a scope and the proxy would serialise it again.
WebSocket upgrades are refused with 501 for now.

Access log: ``total_ms`` runs from the request head parsed to the last byte
handed to the client; ``app_ms`` from the request head sent upstream to the
response head received; ``router_ms`` is the difference.

This module holds the listener and the sweep; the package docstring lists
the other parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from conveyor._http import HostCheck
from conveyor.platform.router._access import AccessRecord
from conveyor.platform.router._client import Client
from conveyor.platform.router._hub import Hub, Limits, Waker

if TYPE_CHECKING:
    from conveyor.platform.router._meter import Meter
    from conveyor.platform.routes import RouteTable

__all__ = ["Router"]


class Router:
    """Serves HTTP on a loopback address and proxies each request to an app instance.

    ``hosts`` are names it answers for besides the loopback names, IP
    addresses and the apps' host routes (DNS rebinding: see
    :mod:`conveyor._http.hosts`); the name it listens on is one of them.
    """

    def __init__(
        self,
        table: RouteTable,
        *,
        connect_timeout: float = 5.0,
        response_timeout: float = 60.0,
        header_timeout: float = 10.0,
        idle_timeout: float = 75.0,
        max_attempts: int = 3,
        max_idle_per_instance: int = 128,
        max_connections_per_client: int = 512,
        hosts: Iterable[str] = (),
        access: Callable[[AccessRecord], None] | None = None,
        meter: Meter | None = None,
        wake: Waker | None = None,
        max_held: int = 256,
        hold_timeout: float = 30.0,
    ) -> None:
        limits = Limits(
            connect_timeout=connect_timeout,
            response_timeout=response_timeout,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
            max_attempts=max_attempts,
            max_idle_per_instance=max_idle_per_instance,
            max_connections_per_client=max_connections_per_client,
            max_held=max_held,
            hold_timeout=hold_timeout,
        )
        self.hub = Hub(table, limits, access, meter, wake)
        self._hosts = list(hosts)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def table(self) -> RouteTable:
        return self.hub.table

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port), or on ``sock``; returns the address."""
        loop = asyncio.get_running_loop()
        hub = self.hub
        hub.now = loop.time
        if sock is not None:
            self._server = await loop.create_server(lambda: Client(hub), sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(lambda: Client(hub), host, port, backlog=2048)
        bound = self._server.sockets[0].getsockname()
        hub.hosts = HostCheck([host, bound[0], *self._hosts], dynamic=hub.table.serves_host)
        self._sweeper = loop.create_task(self._sweep())
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening, close client connections and pooled instance connections."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for client in list(self.hub.clients):
            client.abort()
        self.hub.close_pool()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        """Enforce the timeouts: each connection's :meth:`.Client.check`, a few times a second.

        One sweep per fraction of a second instead of arming and cancelling
        timers on every request, which showed up in the router's profile.
        """
        limits = self.hub.limits
        interval = min(
            1.0, limits.response_timeout / 4, limits.idle_timeout / 4, limits.header_timeout / 4
        )
        while True:
            await asyncio.sleep(interval)
            now = self.hub.now()
            for client in list(self.hub.clients):
                client.check(now)
