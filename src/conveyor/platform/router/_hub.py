"""What every connection of one router shares: routes, settings, the instance pool, the log.

Client connections (:mod:`._client`) and their exchanges (:mod:`._exchange`)
reach the router only through this object, so the modules import one way:
listener → client → exchange → hub → upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conveyor._http import Connection, HostCheck, RequestIds
from conveyor.platform.router._access import AccessRecord, access_log

if TYPE_CHECKING:
    from conveyor.platform.router._meter import Meter
    from conveyor.platform.router._upstream import Upstream
    from conveyor.platform.routes import Backend, RouteTable

__all__ = ["Hub", "Limits", "Waker"]

#: Asked when a request finds no ready instance: what to await until one is (True), or
#: None when the app does not start on demand (the request is answered 503 at once).
Waker = Callable[[str], "Awaitable[bool] | None"]


class Held(Protocol):
    """A request waiting for an instance (:class:`._exchange.Exchange`)."""

    def resume(self) -> None:
        """Forward it now, or answer that no instance came."""


@dataclass(frozen=True)
class Limits:
    """The router's timeouts (seconds) and bounds."""

    #: Opening a connection to an instance.
    connect_timeout: float = 5.0
    #: From the request head sent to an instance to its response head (then 504).
    response_timeout: float = 60.0
    #: From a request's first byte to the end of its head (then 408 and close).
    header_timeout: float = 10.0
    #: A client connection with no request in progress is closed after this.
    idle_timeout: float = 75.0
    #: Instances tried for one request (the first, then the next on a connection failure).
    max_attempts: int = 3
    #: Idle keep-alive connections kept per instance.
    max_idle_per_instance: int = 128
    #: Connections open at once from one client address; more are answered 429 and closed.
    max_connections_per_client: int = 512
    #: Requests held per app while an instance starts for them (scale from zero); more: 503.
    max_held: int = 256
    #: Longest a held request waits for an instance (then 503 with Retry-After).
    hold_timeout: float = 30.0


class Hub:
    """The state one router's connections share, and the pool of instance connections."""

    def __init__(
        self,
        table: RouteTable,
        limits: Limits,
        access: Callable[[AccessRecord], None] | None,
        meter: Meter | None = None,
        wake: Waker | None = None,
    ) -> None:
        self.table = table
        self.limits = limits
        self.connect_timeout = limits.connect_timeout
        self.response_timeout = limits.response_timeout
        self.max_attempts = limits.max_attempts
        self.hosts = HostCheck()
        self.ids = RequestIds()
        #: Open client connections (the sweep enforces their timeouts).
        self.clients: set[Connection] = set()
        self._per_peer: dict[bytes, int] = {}
        self._idle: dict[tuple[str, int], list[Upstream]] = {}
        self._access = access
        self.now: Callable[[], float] = time.monotonic
        #: Counts each request per app and revision (None: nothing is measured).
        self.meter = meter
        self._wake = wake
        self._held: dict[str, int] = {}

    # -- client connections -----------------------------------------------------

    def join(self, client: Connection, peer: bytes) -> bool:
        """Count a new connection from ``peer``; False when it has too many open already."""
        self.clients.add(client)
        count = self._per_peer.get(peer, 0) + 1
        self._per_peer[peer] = count
        return count <= self.limits.max_connections_per_client

    def leave(self, client: Connection, peer: bytes) -> None:
        if client in self.clients:
            self.clients.discard(client)
            count = self._per_peer.get(peer, 1) - 1
            if count > 0:
                self._per_peer[peer] = count
            else:
                self._per_peer.pop(peer, None)

    # -- the pool of instance connections -------------------------------------

    def take(self, backend: Backend) -> Upstream | None:
        stack = self._idle.get((backend.host, backend.port))
        while stack:
            upstream = stack.pop()
            if not upstream.closed:
                return upstream
        return None

    def release(self, upstream: Upstream) -> None:
        stack = self._idle.setdefault(upstream.address, [])
        if upstream.closed:
            return
        if len(stack) < self.limits.max_idle_per_instance:
            stack.append(upstream)
        else:
            upstream.close()

    def close_pool(self) -> None:
        for stack in self._idle.values():
            for upstream in stack:
                upstream.close()
        self._idle.clear()

    # -- requests held while an instance starts -----------------------------------

    def hold(self, exchange: Held, app: str) -> bool:
        """Hold ``exchange`` until ``app`` has a ready instance; False if it cannot wait."""
        if self._wake is None or self._held.get(app, 0) >= self.limits.max_held:
            return False
        waiting = self._wake(app)
        if waiting is None:
            return False
        self._held[app] = self._held.get(app, 0) + 1
        asyncio.get_running_loop().create_task(self._release(exchange, app, waiting))
        return True

    async def _release(self, exchange: Held, app: str, waiting: Awaitable[bool]) -> None:
        # Timed out, or the start failed: the exchange finds no instance and answers 503.
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.limits.hold_timeout):
                    await asyncio.shield(asyncio.ensure_future(waiting))
        finally:
            self._held[app] -= 1
        exchange.resume()

    # -- the access log -------------------------------------------------------

    def log(self, record: AccessRecord) -> None:
        if self._access is not None:
            self._access(record)
        else:
            access_log.info("%s", record.format())

    def logging(self) -> bool:
        return self._access is not None or access_log.isEnabledFor(logging.INFO)
