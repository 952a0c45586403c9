"""One proxied exchange: a client's request, the instance chosen for it and its response.

Chooses an instance (retrying the next on a connection failure), rewrites
the request head for the instance, streams the body, parses the response
with httptools' callbacks and answers the router's own errors (404, 502, 503,
504) as JSON.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

import httptools

from conveyor._http import error_response
from conveyor.platform.router._access import AccessRecord
from conveyor.platform.router._upstream import Upstream
from conveyor.platform.router._wire import HOP_BY_HOP, Head, framing

if TYPE_CHECKING:
    from conveyor.platform.router._hub import Hub
    from conveyor.platform.routes import Backend, Match

__all__ = ["Downstream", "Exchange"]

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


class Downstream(Protocol):
    """What an exchange needs from its client connection (:class:`._client.Client`)."""

    hub: Hub
    peer: bytes
    gone: bool
    write_paused: bool
    #: The instance connection's write buffer is full: read no more request body.
    upstream_full: bool

    def write(self, data: bytes | bytearray) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    def pump(self) -> None:
        """Hand the exchange the request events queued so far."""

    def complete(self, exchange: Exchange) -> None:
        """Both directions of ``exchange`` are done."""


class Exchange:
    """One request from a client and its response from an instance.

    Its methods named ``on_*`` are the response parser's callbacks.
    """

    def __init__(self, client: Downstream, head: Head) -> None:
        self.client = client
        self.hub = hub = client.hub
        self.head = head
        self.started = time.perf_counter()
        rid = head.get(b"x-request-id")
        self.request_id = hub.ids.accept(rid.decode("latin-1")) if rid else hub.ids.new()
        self.match: Match | None = None
        self.backend: Backend | None = None
        self.candidates: list[Backend] = []
        self.tried: list[str] = []
        self.upstream: Upstream | None = None
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
        #: Counted by the hub's meter until :meth:`closed`.
        self.metered = False
        #: The instance the meter counts this exchange as busy on.
        self.busy_on: str | None = None

    # -- choosing an instance -------------------------------------------------

    def start(self) -> None:
        head, table = self.head, self.hub.table
        raw_host = head.get(b"host")
        host = raw_host.decode("latin-1") if raw_host else None
        hosts = self.hub.hosts
        if hosts.known.get(host) is not True and not hosts.allows(host):  # a dict hit, usually
            self.refuse(
                421,
                f"this router does not answer for host {host!r}; it answers localhost, "
                "*.localhost, IP addresses, its own configured name and the apps' host routes",
            )
            return
        path = head.url.decode("latin-1")
        self.match = match = table.match(host, path)
        if match is None:
            where = path.split("?", 1)[0]
            self.refuse(404, f"no app is routed at host {host or '-'} and path {where}")
            return
        meter = self.hub.meter
        if meter is not None:
            self.metered = bool(meter.begin(match.app))
        self.candidates = table.pick(match.app)[: self.hub.max_attempts]
        if not self.candidates and not self.hub.hold(self, match.app):
            self.refuse(503, f"app {match.app!r} has no ready instance")
            return
        if self.candidates:
            self.forward()

    def resume(self) -> None:
        """Held while an instance started: forward now, or answer 503 if none is ready."""
        assert self.match is not None
        if self.client.gone:
            return
        self.candidates = self.hub.table.pick(self.match.app)[: self.hub.max_attempts]
        if not self.candidates:
            wait = self.hub.limits.hold_timeout
            self.refuse(
                503,
                f"app {self.match.app!r} has no ready instance yet: the request waited for "
                f"one to start (at most {wait:g} s); try again shortly",
                retry_after=max(1, round(wait / 6)),
            )
            return
        self.forward()

    def forward(self) -> None:
        head = self.head
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
        upstream = self.hub.take(backend)
        if upstream is not None:
            self.attach(upstream, reused=True)
        else:
            asyncio.get_running_loop().create_task(self.connect(backend))

    async def connect(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        address = (backend.host, backend.port)
        try:
            async with asyncio.timeout(self.hub.connect_timeout):
                _, upstream = await loop.create_connection(
                    lambda: Upstream(address), backend.host, backend.port
                )
        except (OSError, TimeoutError):
            self.try_next()
            return
        if self.client.gone:
            self.hub.release(upstream)
            return
        self.attach(upstream, reused=False)

    def attach(self, upstream: Upstream, *, reused: bool) -> None:
        """Send the request head on ``upstream``; the body follows as the client sends it."""
        self.upstream, self.reused = upstream, reused
        upstream.exchange = self
        self.count_busy(self.backend.key if self.backend is not None else None)
        self.parser = httptools.HttpResponseParser(self)
        self.answered = self.interim = False
        self.sent_at = time.perf_counter()
        upstream.write(self.upstream_head())
        self.deadline = self.hub.now() + self.hub.response_timeout
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

    def upstream_full(self, full: bool) -> None:
        """The instance connection's buffer filled or drained: stop or resume reading the body."""
        client = self.client
        client.upstream_full = full
        if full:
            client.pause_reading()
        else:
            client.resume_reading()

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
                self.hub.release(upstream)
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

    def _discard_upstream(self) -> None:
        """Close the instance connection: after an error its state is unknown."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.close()

    def broken(self, what: str) -> None:
        assert self.backend is not None
        assert self.match is not None
        self._discard_upstream()
        if self.answered:
            self.client.abort()
            return
        self.refuse(502, f"instance {self.backend.key} of app {self.match.app!r} {what}")

    def timed_out(self) -> None:
        if self.answered or self.response_done:
            return
        assert self.backend is not None
        assert self.match is not None
        self._discard_upstream()
        self.refuse(
            504,
            f"instance {self.backend.key} of app {self.match.app!r} did not answer "
            f"within {self.hub.response_timeout:g} s",
        )

    def refuse(self, status: int, message: str, *, retry_after: int = 0, **extra: object) -> None:
        """Answer with the router's own JSON error; the request's remaining body is dropped."""
        self.status = status
        self.discarding = True
        self.keep_client = self.keep_client and (self.request_done or not self.head.has_body)
        answer = error_response(
            status, message, self.request_id, close=not self.keep_client, extra=extra
        )
        if retry_after:
            answer = answer.replace(b"\r\n", b"\r\nretry-after: %d\r\n" % retry_after, 1)
        self.client.write(answer)
        self.response_done = True
        if self.request_done or not self.keep_client:
            self.client.complete(self)

    def count_busy(self, key: str | None) -> None:
        """Tell the meter which instance this exchange occupies now (a drain waits for it)."""
        meter = self.hub.meter
        if meter is None or key == self.busy_on:
            return
        if self.busy_on is not None:
            meter.busy(self.busy_on, -1)
        if key is not None:
            meter.busy(key, 1)
        self.busy_on = key

    def closed(self) -> None:
        """The exchange is over (answered, or its client left): the meter counts it done."""
        self.count_busy(None)
        if self.metered and self.hub.meter is not None and self.match is not None:
            self.metered = False
            key = self.backend.key if self.backend is not None and self.answered else ""
            parts = key.split("/")
            revision = int(parts[1]) if len(parts) == 3 else 0
            elapsed = time.perf_counter() - self.started
            self.hub.meter.end(self.match.app, revision, self.status or 499, elapsed)

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
