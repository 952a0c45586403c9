"""The scoring service's HTTP/1.1 server: httptools callbacks on an asyncio protocol, no ASGI.

A request is parsed by llhttp (through httptools) into a :class:`Request`
and handed to the app with a ``reply`` callback; the app answers at once
(health, metadata) or when the batcher has scored the request. Nothing
runs per request that is not needed: no task, no timer and no dictionary
of ASGI messages; the answer's head and body leave in one write.

What the server does besides:

* **Keep-alive and pipelining**: requests on one connection are answered
  in order; one that arrives while another is being scored waits, and the
  connection stops reading until it is its turn.
* **Limits**: a body over ``max_body`` is refused with 413 as soon as the
  declared length or the bytes read say so (``Expect: 100-continue`` is
  answered either way), and the connection closes, since the rest of the
  body is not read. A request head over 64 KiB gets 431.
* **Timeouts**, enforced by one sweep instead of a timer per request: a
  request not answered ``timeout`` seconds after its first byte gets 504
  (an answer that arrives later is dropped); a keep-alive connection idle
  for ``keep_alive`` seconds is closed.
* **Graceful stop**: stop accepting, close idle connections, let in-flight
  requests finish (their answers say ``connection: close``) within the
  grace period, then close what is left.
* Malformed requests get 400 and the connection closes. A request asking
  to upgrade the protocol (WebSocket, h2c) is answered as plain HTTP/1.1,
  then the connection closes.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from conveyor._http import MAX_HEAD, REASONS, Connection, content_length
from conveyor._http.connection import IDLE, SLOW
from conveyor._http.rules import HEAD
from conveyor.serving.http import Request, Response

if TYPE_CHECKING:
    from conveyor.serving.app import ScoringApp

__all__ = ["HttpServer"]


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpServer:
    """Serves one :class:`ScoringApp` on the running loop, from listening or handed-over sockets."""

    def __init__(
        self, app: ScoringApp, *, keep_alive: float = 5.0, graceful_timeout: float = 30.0
    ) -> None:
        self.app = app
        self.max_body = app.options.max_body
        self.timeout = app.options.timeout
        self.keep_alive = keep_alive
        self.graceful_timeout = graceful_timeout
        self.stopping = False
        self.connections: set[_Connection] = set()
        self.date = b""
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interval = max(0.02, min(0.5, self.timeout / 4, keep_alive / 4))
        self._set_date()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, sockets: list[socket.socket]) -> None:
        """Listen on ``sockets`` (none when connections arrive through :meth:`adopt`)."""
        self._loop = loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
            self._servers.append(server)
        self._sweeper = loop.call_later(self._interval, self._sweep)

    def adopt(self, sock: socket.socket) -> None:
        """Serve a connection accepted elsewhere (passed over from the supervisor)."""
        assert self._loop is not None
        if self.stopping:
            sock.close()
            return
        sock.setblocking(False)
        self._loop.create_task(self._loop.connect_accepted_socket(lambda: _Connection(self), sock))

    async def stop(self) -> None:
        """Stop accepting; finish in-flight requests within the grace period; close everything."""
        self.stopping = True
        self.app.ready = False
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.graceful_timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.app.close()

    # -- housekeeping --------------------------------------------------------------

    def _set_date(self) -> None:
        self.date = email.utils.formatdate(usegmt=True).encode()

    def _sweep(self) -> None:
        """Answer requests past their deadline with 504; close idle keep-alive connections."""
        assert self._loop is not None
        now = perf_counter()
        self._set_date()
        for conn in list(self.connections):
            conn.check(now)
        self._sweeper = self._loop.call_later(self._interval, self._sweep)


class _Connection(Connection):
    """One client connection: httptools parser callbacks, requests answered in order."""

    def __init__(self, server: HttpServer) -> None:
        super().__init__()
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        #: Complete requests not yet answered; the first is the one being answered.
        self.queue: deque[Request] = deque()
        #: The request the app is answering (the first queued, once handed over).
        self.dispatched: Request | None = None
        self.write_paused = False
        self.closing = False
        self.last_active = perf_counter()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._refused = False

    @property
    def idle(self) -> bool:
        return not self.queue and not self.reading_since

    # -- connection events --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)
        self.app.count_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.connections.discard(self)
        self._drop_queue()

    def _drop_queue(self) -> None:
        """Forget the requests not answered yet; the app learns it lost the one it was given."""
        dispatched, self.dispatched = self.dispatched, None
        self.queue.clear()
        if dispatched is not None and not dispatched.answered:
            self.app.abandon(dispatched)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asking to upgrade was answered as plain HTTP/1.1 (it
            # says connection: close); what the client sends after it is not HTTP.
            self._refused = True
        except httptools.HttpParserError as exc:
            if self.head_too_large:
                self.refuse(431, f"the request head is larger than {MAX_HEAD // 1024} KiB")
            else:
                self.refuse(400, f"malformed HTTP request: {exc}")

    def eof_received(self) -> bool | None:
        # The client is done sending: answer the requests it completed, then close.
        if not self.queue:
            return None
        self.closing = True
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.queue:
            self.resume_reading()

    # -- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.reading_since = perf_counter()
        self._url = b""
        self._headers = {}
        self.head_bytes = 0
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self.count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        declared = self._headers.get("content-length")
        if declared is not None:
            try:
                length = content_length(declared)
            except ValueError as exc:
                self.refuse(400, f"malformed HTTP request: {exc}")
                return
            if length > self.server.max_body:
                self.refuse(413, self.app.too_large(length))
                return
        if self._headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._size += len(body)
        if self._size > self.server.max_body:
            self.refuse(413, self.app.too_large(self._size))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        started, self.reading_since = self.reading_since, 0.0
        parser = self.parser
        target = self._url
        path, _, query = target.partition(b"?")
        body = self._body
        req = Request(
            parser.get_method().decode("latin-1"),
            unquote(path.decode("latin-1")) if b"%" in path else path.decode("latin-1"),
            query.decode("latin-1"),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        req.keep_alive = (
            parser.should_keep_alive() and not parser.should_upgrade() and not self.server.stopping
        )
        req.started = started
        self.queue.append(req)
        if len(self.queue) == 1:
            self._dispatch()
        else:
            self.pause_reading()  # pipelined: wait for the requests before it

    # -- answering ------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand the first queued request to the app (unless it already has it)."""
        if self.gone or not self.queue or self.dispatched is self.queue[0]:
            return
        self.dispatched = req = self.queue[0]
        req.reply = self._reply
        self.app.handle(req)

    def _reply(self, req: Request, response: Response) -> None:
        """The app's answer to ``req`` (the first queued request, unless it was dropped)."""
        if self.gone or not self.queue or self.queue[0] is not req:
            return
        self.queue.popleft()
        self.dispatched = None
        keep = req.keep_alive and not self.server.stopping and not self.closing
        if response.status == 413:
            keep = False
        assert self.transport is not None
        self.transport.write(self._encode(req, response, keep))
        self.last_active = perf_counter()
        if not keep:
            self.close()
            return
        if self.queue:
            # On the next loop turn, not from here: an answer given at once would
            # otherwise recurse once per pipelined request.
            asyncio.get_running_loop().call_soon(self._dispatch)
        elif not self.write_paused:
            self.resume_reading()

    def _encode(self, req: Request, response: Response, keep: bool) -> bytes:
        body = response.body
        head = HEAD % (
            response.status,
            REASONS.get(response.status, b"Unknown"),
            response.content_type.encode(),
            len(body),
            req.request_id.encode(),
        )
        head += self.app.lineage_head + b"date: " + self.server.date + b"\r\n"
        for name, value in response.headers.items():
            head += b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
        if not keep:
            head += b"connection: close\r\n"
        if req.method == "HEAD":
            return head + b"\r\n"
        return head + b"\r\n" + body

    def refuse(self, status: int, message: str) -> None:
        """Answer an error found while reading (before the app saw the request) and close."""
        self._refused = True
        self.reading_since = 0.0
        self._drop_queue()
        if self.transport is not None and not self.gone:
            # The path, when read, labels the refusal with its route's protocol in the metrics.
            path = self._url.partition(b"?")[0].decode("latin-1")
            req = Request("GET", unquote(path), "", self._headers)
            response = self.app.refusal(req, status, message)
            self.transport.write(self._encode(req, response, keep=False))
        self.close()

    def check(self, now: float) -> None:
        """The sweep: a deadline passed, or the connection idled too long."""
        timeout = self.server.timeout
        if self.queue:
            req = self.queue[0]
            if req is self.dispatched and now - req.started > timeout and not req.answered:
                self.app.expire(req)
            return
        lapsed = self.lapsed(now, timeout, self.server.keep_alive)
        if lapsed == SLOW:
            self.refuse(408, f"the request was not received within the {timeout:g} s timeout")
        elif lapsed == IDLE:
            self.close()
