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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

from conveyor.platform._wire import HOP_BY_HOP, Head, error_response, framing
from conveyor.platform.routes import Backend, Match, RouteTable

__all__ = ["AccessRecord", "Router"]

log = logging.getLogger("conveyor.platform.router")
access_log = logging.getLogger("conveyor.platform.router.access")

#: A request head larger than this is refused (431).
MAX_HEAD = 64 * 1024
#: Request bytes held while no instance connection takes them; reading pauses above.
MAX_BUFFERED = 1024 * 1024
_REQUEST_SKIP = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-prefix",
    b"x-request-id",
}
_RESPONSE_SKIP = HOP_BY_HOP | {b"content-length"}
#: Methods safe to send again when a pooled connection turns out to be closed.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})


@dataclass(frozen=True)
class AccessRecord:
    """One line of the router's access log."""

    client: str
    method: str
    path: str
    status: int
    bytes_sent: int
    app: str
    instance: str
    request_id: str
    total_ms: float
    app_ms: float

    @property
    def router_ms(self) -> float:
        return max(0.0, self.total_ms - self.app_ms)

    def format(self) -> str:
        return (
            f'{self.client} "{self.method} {self.path}" {self.status} {self.bytes_sent} '
            f"app={self.app or '-'} instance={self.instance or '-'} "
            f"request_id={self.request_id} total_ms={self.total_ms:.2f} "
            f"app_ms={self.app_ms:.2f} router_ms={self.router_ms:.2f}"
        )


def _new_id() -> str:
    """A request id: 32 random hex digits (as uuid4().hex, without its overhead)."""
    return os.urandom(16).hex()


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
        self._clients: set[_Client] = set()
        self._idle: dict[tuple[str, int], list[_Upstream]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._now: Callable[[], float] = time.monotonic

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port), or on ``sock``; returns the address."""
        loop = asyncio.get_running_loop()
        self._now = loop.time
        if sock is not None:
            self._server = await loop.create_server(lambda: _Client(self), sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(lambda: _Client(self), host, port, backlog=2048)
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

    def _take(self, backend: Backend) -> _Upstream | None:
        stack = self._idle.get((backend.host, backend.port))
        while stack:
            upstream = stack.pop()
            if not upstream.closed:
                return upstream
        return None

    def _release(self, upstream: _Upstream) -> None:
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


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to an instance, lent to one exchange at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.close()  # an instance talking out of turn cannot be trusted with the next request
            return
        self.exchange.response_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.upstream_lost()

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.upstream_full = True
            self.exchange.client.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.upstream_full = False
            self.exchange.client.resume_reading()

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Exchange:
    """One request from a client and its response from an instance.

    Its methods named ``on_*`` are the response parser's callbacks.
    """

    def __init__(self, client: _Client, head: Head) -> None:
        self.client = client
        self.router = client.router
        self.head = head
        self.started = time.perf_counter()
        rid = head.get(b"x-request-id")
        self.request_id = rid.decode("latin-1") if rid else _new_id()
        self.match: Match | None = None
        self.backend: Backend | None = None
        self.candidates: list[Backend] = []
        self.tried: list[str] = []
        self.upstream: _Upstream | None = None
        self.reused = False
        self.request_done = False
        self.response_done = False
        self.discarding = False
        self.body_sent = False
        self.answered = False
        self.interim = False
        self.status = 0
        self.sent = 0
        self.sent_at = 0.0
        self.app_ms = 0.0
        self.keep_client = head.keep_alive
        self.reuse_upstream = False
        self.chunk_out = False
        self.no_body = False
        self.close_delimited = False
        self.out = bytearray()
        self.hold_head = False
        #: loop.time() after which a missing response head is a 504.
        self.deadline = 0.0
        self.parser: Any = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.reason = b""

    # -- choosing an instance -------------------------------------------------

    def start(self) -> None:
        head, table = self.head, self.router.table
        host = head.get(b"host")
        path = head.url.decode("latin-1")
        self.match = match = table.match(host.decode("latin-1") if host else None, path)
        if match is None:
            where = path.split("?", 1)[0]
            self.refuse(404, f"no app is routed at host {(host or b'-').decode()} and path {where}")
            return
        self.candidates = table.pick(match.app)[: self.router.max_attempts]
        if not self.candidates:
            self.refuse(503, f"app {match.app!r} has no ready instance")
            return
        if head.get(b"expect") == b"100-continue":
            self.client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.try_next()

    def try_next(self) -> None:
        if self.client.gone:
            return
        if not self.candidates:
            assert self.match is not None
            self.refuse(
                502,
                f"could not connect to any instance of app {self.match.app!r}",
                tried=self.tried,
            )
            return
        self.backend = backend = self.candidates.pop(0)
        self.tried.append(backend.key)
        upstream = self.router._take(backend)
        if upstream is not None:
            self.attach(upstream, reused=True)
        else:
            asyncio.get_running_loop().create_task(self.connect(backend))

    async def connect(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        address = (backend.host, backend.port)
        try:
            async with asyncio.timeout(self.router.connect_timeout):
                _, upstream = await loop.create_connection(
                    lambda: _Upstream(address), backend.host, backend.port
                )
        except (OSError, TimeoutError):
            self.try_next()
            return
        if self.client.gone:
            self.router._release(upstream)
            return
        self.attach(upstream, reused=False)

    def attach(self, upstream: _Upstream, *, reused: bool) -> None:
        """Send the request head on ``upstream``; the body follows as the client sends it."""
        self.upstream, self.reused = upstream, reused
        upstream.exchange = self
        self.parser = httptools.HttpResponseParser(self)
        self.answered = self.interim = False
        self.sent_at = time.perf_counter()
        upstream.write(self.upstream_head())
        self.deadline = self.router._now() + self.router.response_timeout
        self.client.pump()

    def upstream_head(self) -> bytearray:
        head, match = self.head, self.match
        assert match is not None
        out = bytearray(head.method)
        out += b" " + match.path.encode("latin-1") + b" HTTP/1.1\r\n"
        forwarded_for = self.client.peer
        proto = b"http"
        skip = _REQUEST_SKIP | head.connection_tokens if head.connection_tokens else _REQUEST_SKIP
        host = None
        for name, value in head.headers:
            if name in skip:
                if name == b"x-forwarded-for":
                    forwarded_for = value + b", " + forwarded_for
                elif name == b"x-forwarded-proto":
                    proto = value
                continue
            if name == b"host":
                host = value
            out += name + b": " + value + b"\r\n"
        out += b"x-forwarded-for: " + forwarded_for + b"\r\nx-forwarded-proto: " + proto + b"\r\n"
        if host is not None:
            out += b"x-forwarded-host: " + host + b"\r\n"
        if match.route.strip_prefix and match.route.path:
            out += b"x-forwarded-prefix: " + match.route.path.encode("latin-1") + b"\r\n"
        out += b"x-request-id: " + self.request_id.encode("latin-1") + b"\r\n"
        if head.chunked:
            out += b"transfer-encoding: chunked\r\n"
        elif head.content_length is not None:
            out += b"content-length: %d\r\n" % head.content_length
        out += b"\r\n"
        return out

    # -- the request body -----------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Whether request events must wait (no instance connection yet)."""
        return self.upstream is None and not self.discarding

    def body(self, piece: bytes) -> None:
        if self.discarding or self.upstream is None:
            return
        self.body_sent = True
        if self.head.chunked:
            self.upstream.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            self.upstream.write(piece)

    def end(self) -> None:
        self.request_done = True
        if self.head.chunked and self.upstream is not None and not self.discarding:
            self.upstream.write(b"0\r\n\r\n")
        if self.response_done:
            self.client.complete(self)

    # -- the response ---------------------------------------------------------

    def response_data(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.broken("sent a malformed response")
            return
        if self.response_done:
            self.finish_response()
        elif self.out and (self.sent or not self.hold_head):
            self.sent_out()

    def on_message_begin(self) -> None:
        self.response_headers = []
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response_headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True  # 1xx: its end follows; the real response comes next
            return
        self.answered = True
        self.status = status
        self.app_ms = (time.perf_counter() - self.sent_at) * 1000
        head = self.head
        length, chunked, tokens = framing(self.response_headers)
        self.reuse_upstream = self.parser.should_keep_alive()
        self.no_body = head.method == b"HEAD" or status in (204, 304)
        length_known = length is not None and not chunked
        self.close_delimited = not self.no_body and length is None and not chunked
        self.chunk_out = not self.no_body and not length_known and head.version == "1.1"
        if not (self.no_body or length_known or self.chunk_out):
            self.keep_client = False  # an HTTP/1.0 client learns the end by the close
        out = self.out
        out += b"HTTP/1.1 %d %s\r\n" % (status, self.reason)
        skip = _RESPONSE_SKIP | tokens if tokens else _RESPONSE_SKIP
        has_id = False
        for name, value in self.response_headers:
            if name in skip:
                continue
            if name == b"x-request-id":
                has_id = True
            out += name + b": " + value + b"\r\n"
        if not has_id:
            out += b"x-request-id: " + self.request_id.encode("latin-1") + b"\r\n"
        if length is not None and not chunked:
            out += b"content-length: %d\r\n" % length
        elif self.chunk_out:
            out += b"transfer-encoding: chunked\r\n"
        if not self.keep_client:
            out += b"connection: close\r\n"
        out += b"\r\n"
        if head.method == b"HEAD":
            self.response_done = True  # llhttp would wait for the body the length announces
        # Apps write the head and a short body separately; holding the head until
        # the first body bytes sends both in one write (one syscall, one packet).
        self.hold_head = bool(length) and not chunked

    def on_body(self, body: bytes) -> None:
        self.sent += len(body)
        if self.chunk_out:
            self.out += b"%x\r\n" % len(body)
            self.out += body
            self.out += b"\r\n"
        else:
            self.out += body

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.response_done = True

    def sent_out(self) -> None:
        self.client.write(self.out)
        self.out = bytearray()

    def finish_response(self) -> None:
        self.response_done = True
        if self.chunk_out:
            self.out += b"0\r\n\r\n"
        if self.out:
            self.sent_out()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            # The instance may still expect body bytes the client never sent: not reusable.
            if self.reuse_upstream and self.request_done:
                if self.client.write_paused and upstream.transport is not None:
                    # Paused for this slow client; the next exchange needs it reading.
                    upstream.transport.resume_reading()
                self.router._release(upstream)
            else:
                upstream.close()
        if self.request_done:
            self.client.complete(self)
        else:
            self.discarding = True  # answered early: the rest of the request body is dropped

    def upstream_lost(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
        if self.client.gone or self.response_done:
            return
        if self.answered:
            if self.close_delimited:
                self.finish_response()  # the close is how this body ends
            else:
                self.client.abort()  # the client already has part of a response
            return
        if not self.body_sent and self.head.method in _IDEMPOTENT:
            # No byte of an answer and nothing that cannot be sent again: a pooled
            # connection the instance had closed (retry it fresh), or an instance
            # that died with our connection in its backlog (try the next one).
            if self.reused:
                assert self.backend is not None
                self.candidates.insert(0, self.backend)
                self.tried.pop()
            self.try_next()
            return
        self.broken("closed the connection without answering")

    def broken(self, what: str) -> None:
        assert self.backend is not None
        assert self.match is not None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.close()
        if self.answered:
            self.client.abort()
            return
        self.refuse(502, f"instance {self.backend.key} of app {self.match.app!r} {what}")

    def timed_out(self) -> None:
        if self.answered or self.response_done:
            return
        assert self.backend is not None
        assert self.match is not None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.close()
        self.refuse(
            504,
            f"instance {self.backend.key} of app {self.match.app!r} did not answer "
            f"within {self.router.response_timeout:g} s",
        )

    def refuse(self, status: int, message: str, **extra: object) -> None:
        """Answer with the router's own JSON error; the request's remaining body is dropped."""
        self.status = status
        self.discarding = True
        self.keep_client = self.keep_client and (self.request_done or not self.head.has_body)
        self.client.write(
            error_response(
                status, message, self.request_id, close=not self.keep_client, extra=extra
            )
        )
        self.response_done = True
        if self.request_done or not self.keep_client:
            self.client.complete(self)

    def record(self) -> AccessRecord:
        return AccessRecord(
            self.client.peer.decode(),
            self.head.method.decode("latin-1"),
            self.head.url.decode("latin-1"),
            self.status,
            self.sent,
            self.match.app if self.match and self.status not in (404,) else "",
            self.backend.key if self.backend and self.answered else "",
            self.request_id,
            (time.perf_counter() - self.started) * 1000,
            self.app_ms,
        )


class _Client(asyncio.Protocol):
    """One client connection: parses its requests (httptools callbacks) and runs their exchanges.

    Parser callbacks queue events in ``inbox``; :meth:`pump` hands them to the
    current exchange as far as it can take them, so a pipelined request waits
    its turn and a body waits for its instance connection.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b"-"
        self.inbox: deque[tuple[int, Any]] = deque()
        self.buffered = 0
        self.exchange: _Exchange | None = None
        self.gone = False
        self.paused = False
        self.write_paused = False
        #: The instance connection's write buffer is full: read no more request body.
        self.upstream_full = False
        self.last_active = 0.0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0

    # -- connection events ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.router._clients.add(self)
        self.last_active = self.router._now()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.router._clients.discard(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            upstream, exchange.upstream = exchange.upstream, None
            if upstream is not None:
                upstream.exchange = None
                upstream.close()  # mid-exchange: its state is unknown

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(501, "the router does not support protocol upgrades (WebSocket) yet")
            return
        except httptools.HttpParserError as exc:
            if self._head_bytes > MAX_HEAD:
                self.fail(431, f"request head larger than {MAX_HEAD // 1024} KiB")
            else:
                self.fail(400, f"malformed HTTP request: {exc}")
            return
        self.pump()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.write_paused = True
        exchange = self.exchange
        if exchange is not None and exchange.upstream is not None:
            transport = exchange.upstream.transport
            if transport is not None:
                transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        exchange = self.exchange
        if exchange is not None and exchange.upstream is not None:
            transport = exchange.upstream.transport
            if transport is not None and not exchange.upstream.closed:
                transport.resume_reading()

    # -- request parser callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD:
            raise ValueError("head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD:
            raise ValueError("head too large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        length, chunked, tokens = framing(self._headers)
        head = Head(
            parser.get_method(),
            self._url,
            parser.get_http_version(),
            self._headers,
            parser.should_keep_alive(),
            length,
            chunked,
            tokens,
        )
        self.inbox.append((0, head))

    def on_body(self, body: bytes) -> None:
        self.inbox.append((1, body))
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.inbox.append((2, None))

    # -- driving exchanges ------------------------------------------------------

    def pump(self) -> None:
        """Hand queued request events to the current exchange as far as it can take them."""
        inbox = self.inbox
        while inbox and not self.gone:
            exchange = self.exchange
            kind, value = inbox[0]
            if exchange is None:
                inbox.popleft()
                if kind == 0:
                    self.exchange = _Exchange(self, value)
                    self.exchange.start()
                continue
            if exchange.request_done or exchange.waiting:
                break  # a pipelined request waits for this response; a body for its instance
            inbox.popleft()
            if kind == 1:
                self.buffered -= len(value)
                exchange.body(value)
            elif kind == 2:
                exchange.end()
            else:  # a head before the previous request ended cannot happen with llhttp
                break
        if self.buffered > MAX_BUFFERED or (self.exchange is not None and inbox):
            self.pause_reading()
        elif self.paused and not inbox and not self.upstream_full:
            self.resume_reading()

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None and not self.gone:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.gone:
            self.paused = False
            self.transport.resume_reading()

    def complete(self, exchange: _Exchange) -> None:
        """Both directions of ``exchange`` are done: log it, then keep or close the connection."""
        if self.exchange is not exchange:
            return
        self.exchange = None
        self.upstream_full = False
        self.last_active = self.router._now()
        if self.router._logging():
            self.router._log(exchange.record())
        if not exchange.keep_client:
            self.close()
            return
        if self.inbox:
            self.pump()
        elif self.paused:
            self.resume_reading()

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.gone:
            self.transport.write(data)

    def fail(self, status: int, message: str) -> None:
        self.write(error_response(status, message, _new_id(), close=True))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flushes what was written first

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
