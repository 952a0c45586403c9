"""The router: an asyncio HTTP/1.1 reverse proxy on every request's path to an instance.

For each request it finds the app by ``Host`` (``iris.localhost``) or path
prefix (:mod:`.routes`), takes the app's ready instances in round-robin
order and tries the next one when a connection cannot be made. Bodies stream
both ways (re-framed as chunked when their length is unknown), connections to
instances are kept alive in a pool, and every failure the router itself
produces is a JSON body: 404 (no route), 503 (no ready instance), 502
(instances unreachable or the answer broke off), 504 (no answer in time).

Why not an ASGI app like the rest of Conveyor: an ASGI server would parse
the request, build a scope, and the proxy would then re-serialise it; raw
asyncio streams with httptools (already a dependency through uvicorn) parse
once and copy bytes. WebSocket upgrades are refused with 501 for now.

Access log: ``total_ms`` runs from the request head parsed to the last byte
sent; ``app_ms`` from the request sent upstream to the response head
received; ``router_ms`` is the difference (routing, connecting, copying).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httptools

from conveyor.platform._wire import HOP_BY_HOP, Head, ParserEvents, ResponseHead, error_response
from conveyor.platform.routes import Backend, Match, RouteTable

__all__ = ["AccessRecord", "Router"]

log = logging.getLogger("conveyor.platform.router")
access_log = logging.getLogger("conveyor.platform.router.access")

READ_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024
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


class _ClientGone(Exception):
    """The client closed its connection (or sent garbage) mid-request."""


class _Upstream(Exception):
    """The instance's connection failed; ``answered`` if any response byte had arrived."""

    def __init__(self, answered: bool, sent_body: bool) -> None:
        self.answered = answered
        self.sent_body = sent_body


class _Pool:
    """Idle keep-alive connections per instance address."""

    def __init__(self, connect_timeout: float, max_idle: int = 128) -> None:
        self._idle: dict[
            tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        ] = {}
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle

    async def acquire(
        self, backend: Backend, *, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        stack = self._idle.get((backend.host, backend.port))
        while stack and not fresh:
            reader, writer = stack.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            return reader, writer, True
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                backend.host, backend.port, limit=READ_SIZE
            )
        return reader, writer, False

    def release(
        self, backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        stack = self._idle.setdefault((backend.host, backend.port), [])
        if len(stack) < self._max_idle and not writer.is_closing():
            stack.append((reader, writer))
        else:
            writer.close()

    def close(self) -> None:
        for stack in self._idle.values():
            for _, writer in stack:
                writer.close()
        self._idle.clear()


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
        access: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        self.table = table
        self._pool = _Pool(connect_timeout)
        self._response_timeout = response_timeout
        self._idle_timeout = idle_timeout
        self._max_attempts = max_attempts
        self._access = access
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port); returns the bound address."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=READ_SIZE, backlog=1024
        )
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening, end open connections and the pool."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._pool.close()

    # -- one client connection --------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else "-"
        events = ParserEvents()
        parser = httptools.HttpRequestParser(events)
        events.parser = parser
        try:
            while True:
                head = await self._next_head(reader, writer, parser, events)
                if head is None or not await self._proxy(
                    head, client, reader, writer, parser, events
                ):
                    break
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels connections; ending normally keeps asyncio's
            # stream callback (3.11) from logging the cancellation as an error.
            pass
        except Exception:
            log.exception("router connection from %s failed", client)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _feed(
        self, reader: asyncio.StreamReader, parser: httptools.HttpRequestParser, timeout: float
    ) -> None:
        async with asyncio.timeout(timeout):
            data = await reader.read(READ_SIZE)
        if not data:
            raise _ClientGone
        parser.feed_data(data)

    async def _next_head(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: httptools.HttpRequestParser,
        events: ParserEvents,
    ) -> Head | None:
        while not events.queue:
            try:
                await self._feed(reader, parser, self._idle_timeout)
            except (_ClientGone, TimeoutError):
                return None
            except httptools.HttpParserUpgrade:
                writer.write(
                    error_response(
                        501,
                        "the router does not support protocol upgrades (WebSocket) yet",
                        _new_id(),
                        close=True,
                    )
                )
                return None
            except httptools.HttpParserError as exc:
                writer.write(
                    error_response(400, f"malformed HTTP request: {exc}", _new_id(), close=True)
                )
                return None
            if not events.queue and events.header_bytes > MAX_HEAD:
                writer.write(
                    error_response(431, "request head larger than 64 KiB", _new_id(), close=True)
                )
                return None
        kind, head = events.queue.popleft()
        assert kind == "head"
        return head  # type: ignore[no-any-return]

    async def _body(
        self,
        reader: asyncio.StreamReader,
        parser: httptools.HttpRequestParser,
        events: ParserEvents,
    ) -> AsyncIterator[bytes]:
        """The current request's body pieces, read from the client as they are needed."""
        while True:
            while events.queue:
                kind, value = events.queue[0]
                if kind == "head":  # the next pipelined request: ours has ended
                    return
                events.queue.popleft()
                if kind == "end":
                    return
                yield value
            try:
                await self._feed(reader, parser, self._response_timeout)
            except (httptools.HttpParserError, TimeoutError) as exc:
                raise _ClientGone from exc

    def _log(self, record: AccessRecord) -> None:
        if self._access is not None:
            self._access(record)
        elif access_log.isEnabledFor(logging.INFO):
            access_log.info("%s", record.format())

    async def _proxy(
        self,
        head: Head,
        client: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: httptools.HttpRequestParser,
        events: ParserEvents,
    ) -> bool:
        """Answer one request; whether the client connection stays open."""
        started = time.perf_counter()
        request_id = (head.get(b"x-request-id") or b"").decode("latin-1") or _new_id()
        host_header = head.get(b"host")
        host = host_header.decode("latin-1") if host_header else None
        path = head.url.decode("latin-1")
        method = head.method.decode("latin-1")

        def refuse(status: int, message: str, app: str = "", **extra: object) -> bool:
            # A refused request's body is not read: close rather than parse it away.
            keep = head.keep_alive and not head.has_body
            writer.write(error_response(status, message, request_id, close=not keep, extra=extra))
            self._log(
                AccessRecord(
                    client,
                    method,
                    path,
                    status,
                    0,
                    app,
                    "",
                    request_id,
                    (time.perf_counter() - started) * 1000,
                    0.0,
                )
            )
            return keep

        match = self.table.match(host, path)
        if match is None:
            return refuse(
                404, f"no app is routed at host {host or '-'} and path {path.split('?')[0]}"
            )
        backends = self.table.pick(match.app)
        if not backends:
            return refuse(503, f"app {match.app!r} has no ready instance", match.app)
        if head.get(b"expect") == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        upstream_head = self._upstream_head(head, match, client, host, request_id)
        tried: list[str] = []
        for backend in backends[: self._max_attempts]:
            tried.append(backend.key)
            fresh = False
            while True:
                try:
                    up_reader, up_writer, reused = await self._pool.acquire(backend, fresh=fresh)
                except (OSError, TimeoutError):
                    break  # cannot connect: the next instance
                try:
                    return await self._exchange(
                        head, upstream_head, match, backend, up_reader, up_writer,
                        reader, writer, parser, events, client, request_id, started,
                    )  # fmt: skip
                except _Upstream as failed:
                    up_writer.close()
                    if failed.answered:
                        return False  # the client already has part of a response
                    if reused and not failed.sent_body and head.method in _IDEMPOTENT:
                        fresh = True  # a pooled connection the instance had closed
                        continue
                    return refuse(
                        502,
                        f"instance {backend.key} of app {match.app!r} closed the connection "
                        "without answering",
                        match.app,
                    )
                except TimeoutError:
                    up_writer.close()
                    return refuse(
                        504,
                        f"instance {backend.key} of app {match.app!r} did not answer "
                        f"within {self._response_timeout:g} s",
                        match.app,
                    )
        return refuse(
            502,
            f"could not connect to any instance of app {match.app!r}",
            match.app,
            tried=tried,
        )

    def _upstream_head(
        self, head: Head, match: Match, client: str, host: str | None, request_id: str
    ) -> bytearray:
        out = bytearray(head.method)
        out += b" " + match.path.encode("latin-1") + b" HTTP/1.1\r\n"
        forwarded_for = client.encode()
        proto = b"http"
        skip = _REQUEST_SKIP | head.connection_tokens
        for name, value in head.headers:
            if name in skip:
                if name == b"x-forwarded-for":
                    forwarded_for = value + b", " + forwarded_for
                elif name == b"x-forwarded-proto":
                    proto = value
                continue
            out += name + b": " + value + b"\r\n"
        out += b"x-forwarded-for: " + forwarded_for + b"\r\n"
        out += b"x-forwarded-proto: " + proto + b"\r\n"
        if host:
            out += b"x-forwarded-host: " + host.encode("latin-1") + b"\r\n"
        if match.route.strip_prefix and match.route.path:
            out += b"x-forwarded-prefix: " + match.route.path.encode("latin-1") + b"\r\n"
        out += b"x-request-id: " + request_id.encode("latin-1") + b"\r\n"
        if head.chunked:
            out += b"transfer-encoding: chunked\r\n"
        elif head.content_length is not None:
            out += b"content-length: %d\r\n" % head.content_length
        out += b"\r\n"
        return out

    async def _exchange(
        self,
        head: Head,
        upstream_head: bytearray,
        match: Match,
        backend: Backend,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: httptools.HttpRequestParser,
        events: ParserEvents,
        client: str,
        request_id: str,
        started: float,
    ) -> bool:
        """Send one request to one instance and relay its response; whether to keep the client."""
        sent_body = False
        try:
            up_writer.write(upstream_head)
            if head.has_body:
                sent_body = True
                async for piece in self._body(reader, parser, events):
                    up_writer.write(
                        b"%x\r\n%s\r\n" % (len(piece), piece) if head.chunked else piece
                    )
                    await up_writer.drain()
                if head.chunked:
                    up_writer.write(b"0\r\n\r\n")
            else:
                # Nothing to read, but the "end" event of this request must go.
                while events.queue and events.queue[0][0] != "head":
                    events.queue.popleft()
            await up_writer.drain()
        except OSError as exc:
            raise _Upstream(answered=False, sent_body=sent_body) from exc
        sent_at = time.perf_counter()
        response_events = ParserEvents(response=True)
        response_parser = httptools.HttpResponseParser(response_events)
        response_events.parser = response_parser
        upstream_eof = False

        async def more() -> None:
            nonlocal upstream_eof
            async with asyncio.timeout(self._response_timeout):
                data = await up_reader.read(READ_SIZE)
            if not data:
                upstream_eof = True
                return
            response_parser.feed_data(data)

        try:
            response: ResponseHead | None = None
            while response is None:
                while not response_events.queue:
                    await more()
                    if upstream_eof:
                        raise _Upstream(answered=False, sent_body=sent_body)
                kind, value = response_events.queue.popleft()
                if kind == "head" and not 100 <= value.status < 200:
                    response = value
                elif kind == "head":  # an interim 1xx: its "end" follows; wait for the real one
                    continue
        except TimeoutError:
            raise  # a 504, not a broken connection (TimeoutError is an OSError)
        except (OSError, httptools.HttpParserError) as exc:
            raise _Upstream(answered=False, sent_body=sent_body) from exc
        app_ms = (time.perf_counter() - sent_at) * 1000

        no_body = head.method == b"HEAD" or response.status in (204, 304)
        length_known = response.content_length is not None and not response.chunked
        chunk_out = not no_body and not length_known and head.version == "1.1"
        keep_client = head.keep_alive and (no_body or length_known or chunk_out)
        out = bytearray(b"HTTP/1.1 %d %s\r\n" % (response.status, response.reason))
        skip = _RESPONSE_SKIP | response.connection_tokens
        has_request_id = False
        for name, value in response.headers:
            if name in skip:
                continue
            has_request_id = has_request_id or name == b"x-request-id"
            out += name + b": " + value + b"\r\n"
        if not has_request_id:
            out += b"x-request-id: " + request_id.encode("latin-1") + b"\r\n"
        if response.content_length is not None and not response.chunked:
            out += b"content-length: %d\r\n" % response.content_length
        elif chunk_out:
            out += b"transfer-encoding: chunked\r\n"
        if not keep_client:
            out += b"connection: close\r\n"
        out += b"\r\n"

        # The head and whatever body has arrived leave in one write (one syscall).
        sent = 0
        complete = no_body
        try:
            while True:
                while response_events.queue and not complete:
                    kind, value = response_events.queue.popleft()
                    if kind == "body":
                        sent += len(value)
                        if chunk_out:
                            out += b"%x\r\n" % len(value)
                            out += value
                            out += b"\r\n"
                        else:
                            out += value
                    elif kind == "end":
                        complete = True
                if complete:
                    break
                if out:
                    writer.write(out)
                    out = bytearray()
                await writer.drain()
                await more()
                if upstream_eof:
                    # End of a body delimited by closing; anything else broke off.
                    if response.content_length is None and not response.chunked:
                        response_events.queue.clear()
                        break
                    raise _Upstream(answered=True, sent_body=sent_body)
            if chunk_out:
                out += b"0\r\n\r\n"
            writer.write(out)
            await writer.drain()
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            raise _Upstream(answered=True, sent_body=sent_body) from exc

        if head.method == b"HEAD":
            reusable = response.keep_alive
        else:
            # Captured with the head: llhttp forgets it once the message is complete.
            reusable = response.keep_alive and not upstream_eof
        if reusable:
            self._pool.release(backend, up_reader, up_writer)
        else:
            up_writer.close()
        self._log(
            AccessRecord(
                client,
                head.method.decode("latin-1"),
                head.url.decode("latin-1"),
                response.status,
                sent,
                match.app,
                backend.key,
                request_id,
                (time.perf_counter() - started) * 1000,
                app_ms,
            )
        )
        return keep_client
