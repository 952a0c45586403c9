"""How the control API is served: uvicorn, with the limits a local control plane needs.

uvicorn closes a keep-alive connection idle between requests, but not one
that never sends a request or stops half-way through its head, and it has
no bound per client: 200 such connections could be held open indefinitely in the
process that also supervises every app. So the control API runs on a small
subclass of uvicorn's httptools protocol that

* answers 408 and closes when a request head is not complete within
  ``header_timeout`` seconds of the connection opening or the request's first byte;
* answers 429 and closes a connection beyond ``max_connections_per_client``
  open at once from one address;

and behind :class:`HostGuard`, which answers 421 to a ``Host`` that is not a
loopback name or the API's own address (DNS rebinding, see
:mod:`conveyor._http.hosts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from conveyor._http import HostCheck, RequestIds, error_response

__all__ = ["HostGuard", "api_config"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HostGuard:
    """ASGI middleware: 421 with a JSON error for a ``Host`` the API is not known by."""

    def __init__(self, app: ASGIApp, check: HostCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v for k, v in scope["headers"] if k == b"host"), None)
            name = host.decode("latin-1") if host is not None else None
            if not self.check.allows(name):
                body = orjson.dumps(
                    {
                        "error": f"the control API does not answer for host {name!r}; "
                        "use localhost, 127.0.0.1 or [::1]",
                        "status": 421,
                    }
                )
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ]
                await send({"type": "http.response.start", "status": 421, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def api_config(
    app: ASGIApp,
    *,
    hosts: Iterable[str] = (),
    header_timeout: float = 10.0,
    keep_alive: int = 5,
    max_connections_per_client: int = 256,
) -> Any:
    """The uvicorn.Config for the control API ``app``; ``hosts`` are its own names."""
    import uvicorn

    return uvicorn.Config(
        HostGuard(app, HostCheck(hosts)),
        http=_guarded_protocol(header_timeout, max_connections_per_client),
        timeout_keep_alive=keep_alive,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
    )


def _guarded_protocol(header_timeout: float, max_per_client: int) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    open_per_peer: dict[str, int] = {}
    ids = RequestIds()

    class Guarded(HttpToolsProtocol):
        """uvicorn's httptools protocol with a request-head timeout and a bound per client."""

        _head_timer: asyncio.TimerHandle | None = None
        _peer = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = self.client[0] if self.client else "-"
            count = open_per_peer.get(self._peer, 0) + 1
            open_per_peer[self._peer] = count
            if count > max_per_client:
                self._refuse(
                    429,
                    f"too many connections from {self._peer} (at most {max_per_client} at a "
                    "time); reuse keep-alive connections or close idle ones",
                )
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            count = open_per_peer.get(self._peer, 1) - 1
            if count > 0:
                open_per_peer[self._peer] = count
            else:
                open_per_peer.pop(self._peer, None)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            self._refuse(408, f"no complete request head within {header_timeout:g} s")

        def _refuse(self, status: int, message: str) -> None:
            if not self.transport.is_closing():
                self.transport.write(error_response(status, message, ids.new(), close=True))
                self.transport.close()

    return Guarded
