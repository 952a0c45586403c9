"""The router: an asyncio HTTP/1.1 reverse proxy on every request's path to an instance.

For each request it finds the app by ``Host`` (``iris.localhost``) or path
prefix (:mod:`.routes`), takes the app's ready instances in round-robin
order and tries the next one when a connection cannot be made. Bodies stream
both ways (re-framed as chunked when their length is unknown), connections to
instances are kept alive in a pool, and every failure the router itself
produces is a JSON body: 404 (no route), 503 (no ready instance), 502
(instances unreachable, or one closed without answering), 504 (no answer in
time).

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

The parts, one module each: :mod:`._client` (a client connection, parsing
its requests), :mod:`._exchange` (one request and its response),
:mod:`._upstream` (a pooled connection to an instance) and :mod:`._access`
(the access log). This module holds the listener and the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.platform._access import AccessRecord, access_log
from conveyor.platform._client import Client

if TYPE_CHECKING:
    from conveyor.platform._upstream import Upstream
    from conveyor.platform.routes import Backend, RouteTable

__all__ = ["AccessRecord", "Router"]

log = logging.getLogger("conveyor.platform.router")


class Router:
    """Serves HTTP on a loopback address and proxies each request to an app instance."""

    def __init__(
        self,
        table: RouteTable,
        *,
        connect_timeout: float = 5.0,
        response_timeout: float = 60.0,
        idle_timeout: float = 75.0,
        max_attempts: int = 3,
        max_idle_per_instance: int = 128,
        access: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        self.table = table
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.idle_timeout = idle_timeout
        self.max_attempts = max_attempts
        self._max_idle = max_idle_per_instance
        self._access = access
        self._server: asyncio.Server | None = None
        self._clients: set[Client] = set()
        self._idle: dict[tuple[str, int], list[Upstream]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._now: Callable[[], float] = time.monotonic

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port), or on ``sock``; returns the address."""
        loop = asyncio.get_running_loop()
        self._now = loop.time
        if sock is not None:
            self._server = await loop.create_server(lambda: Client(self), sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(lambda: Client(self), host, port, backlog=2048)
        self._sweeper = loop.create_task(self._sweep())
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening, close client connections and pooled instance connections."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for client in list(self._clients):
            client.abort()
        for stack in self._idle.values():
            for upstream in stack:
                upstream.close()
        self._idle.clear()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        """Enforce the idle and response timeouts.

        One sweep per fraction of a second instead of arming and cancelling two
        timers on every request, which showed up in the router's profile.
        """
        interval = min(1.0, self.response_timeout / 4, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self._now()
            for client in list(self._clients):
                exchange = client.exchange
                if exchange is None:
                    if now - client.last_active > self.idle_timeout:
                        client.close()
                elif (
                    exchange.upstream is not None
                    and not exchange.answered
                    and now > exchange.deadline
                ):
                    exchange.timed_out()

    # -- the pool of instance connections -------------------------------------

    def _take(self, backend: Backend) -> Upstream | None:
        stack = self._idle.get((backend.host, backend.port))
        while stack:
            upstream = stack.pop()
            if not upstream.closed:
                return upstream
        return None

    def _release(self, upstream: Upstream) -> None:
        stack = self._idle.setdefault(upstream.address, [])
        if upstream.closed:
            return
        if len(stack) < self._max_idle:
            stack.append(upstream)
        else:
            upstream.close()

    def _log(self, record: AccessRecord) -> None:
        if self._access is not None:
            self._access(record)
        else:
            access_log.info("%s", record.format())

    def _logging(self) -> bool:
        return self._access is not None or access_log.isEnabledFor(logging.INFO)
