"""The router's client side: one protocol per client connection, parsing its requests."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from conveyor._http import MAX_HEAD, Connection, error_response
from conveyor._http.connection import IDLE, SLOW
from conveyor.platform.router._exchange import Exchange
from conveyor.platform.router._split import observe
from conveyor.platform.router._wire import Head, framing

if TYPE_CHECKING:
    from conveyor.platform.router._hub import Hub

__all__ = ["MAX_BUFFERED", "Client"]

#: Request bytes held while no instance connection takes them; reading pauses above.
MAX_BUFFERED = 1024 * 1024


class Client(Connection):
    """One client connection: parses its requests (httptools callbacks) and runs their exchanges.

    Parser callbacks queue events in ``inbox``; :meth:`pump` hands them to the
    current exchange as far as it can take them, so a pipelined request waits
    its turn and a body waits for its instance connection.
    """

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b"-"
        self.inbox: deque[tuple[int, Any]] = deque()
        self.buffered = 0
        self.exchange: Exchange | None = None
        self.write_paused = False
        #: The instance connection's write buffer is full: read no more request body.
        self.upstream_full = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []

    # -- connection events ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.last_active = self.hub.now()
        if not self.hub.join(self, self.peer):
            limit = self.hub.limits.max_connections_per_client
            self.fail(
                429,
                f"too many connections from {self.peer.decode()} (at most {limit} at a time); "
                "reuse keep-alive connections or close idle ones",
            )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.hub.leave(self, self.peer)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.closed()
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
            if self.head_too_large:
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
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self.count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self.count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        # The body streams to the instance: from here its own timeout counts.
        self.head_bytes = self.reading_since = 0
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
                    self.exchange = Exchange(self, value)
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

    def complete(self, exchange: Exchange) -> None:
        """Both directions of ``exchange`` are done: log it, then keep or close the connection."""
        if self.exchange is not exchange:
            return
        exchange.closed()
        self.exchange = None
        self.upstream_full = False
        self.last_active = self.hub.now()
        observe(exchange)  # a canary's measurements (router/_split.py)
        if self.hub.logging():
            self.hub.log(exchange.record())
        if not exchange.keep_client:
            self.close()
            return
        if self.inbox:
            self.pump()
        elif self.paused:
            self.resume_reading()

    def fail(self, status: int, message: str) -> None:
        self.write(error_response(status, message, self.hub.ids.new(), close=True))
        self.close()

    def check(self, now: float) -> None:
        """The sweep: a head sent too slowly (408), an idle connection, a slow instance (504)."""
        exchange = self.exchange
        if exchange is None:
            # A head in progress is noticed here, not timed per request: a clock
            # read per request showed in the router's profile. It gets between
            # header_timeout and header_timeout plus one sweep interval.
            if not self.head_bytes:
                self.reading_since = 0
            elif not self.reading_since:
                self.reading_since = now
            lapsed = self.lapsed(now, self.hub.limits.header_timeout, self.hub.limits.idle_timeout)
            if lapsed == SLOW:
                timeout = self.hub.limits.header_timeout
                self.fail(408, f"the request head was not received within {timeout:g} s")
            elif lapsed == IDLE:
                self.close()
        elif exchange.upstream is not None and not exchange.answered and now > exchange.deadline:
            exchange.timed_out()
