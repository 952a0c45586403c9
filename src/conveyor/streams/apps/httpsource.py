"""The http source: records POSTed as JSON or CSV become messages, once published answered 202.

What it refuses, and why:

- a body that is neither ``application/json`` nor ``text/csv`` (415): an HTML
  form or ``text/plain`` is what a web page can send to any site without the
  browser asking first, so such a page must not be able to post into a stream;
- a request whose ``Origin`` is another site (403): a browser names the page
  that sends a request; only a page served by this source (or the router in
  front of it) on a loopback name is the source's own;
- without ``Authorization: Bearer <token>`` when the stream gave ``--auth-token``
  (401), for sources the router exposes beyond loopback; the option holds the
  token's salted hash (:mod:`conveyor.streams.token_hash`), which the bearer
  token is checked against in constant time;
- a ``Content-Length`` that is negative, not a number or given twice with
  different values (400), and any body past 16 MiB, chunked or not (413).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from conveyor.streams.apps.base import AppContext
from conveyor.streams.errors import StreamError
from conveyor.streams.messages import Message, csv_records
from conveyor.streams.token_hash import TokenCheck

__all__ = ["MAX_BODY", "HttpSource"]

#: Largest request body accepted, whatever its framing.
MAX_BODY = 16 * 1024 * 1024
#: How long a client may take to send its request before the connection is dropped.
_READ_TIMEOUT = 30.0
#: How long a source waits on an idle input before checking whether it should stop.
_TICK = 0.1
_JSON, _CSV = "application/json", "text/csv"
#: Seconds a client refused with 503 (the stream not keeping up) is asked to wait.
_RETRY_AFTER = "1"
#: Requests waiting to be published, beyond the batch being published.
_INBOX = 64
#: How long a request waits for room in the inbox before it is refused (nothing published).
_QUEUE_WAIT = 30.0
#: How long a request waits for its messages to be published before it is answered 503.
_PUBLISH_WAIT = 30.0


class Refused(StreamError):
    """A request the source answers with ``status`` and ``message`` (closing the connection)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_origin(origin: str | None, host: str | None) -> None:
    """Refuse (403) a browser request sent by a page of another origin than this one."""
    if origin is None:
        return  # not sent by a browser page (curl, another service)
    parts = urlsplit(origin)
    same = host is not None and parts.scheme in ("http", "https") and parts.netloc == host
    if not same or not _is_loopback(parts.hostname or ""):
        raise Refused(
            403,
            f"requests from the web page at {origin} are refused: only this source's own "
            "loopback origin may post from a browser",
        )


def content_length(values: list[str]) -> int | None:
    """The body's length from the request's Content-Length header(s); None if there is none."""
    if not values:
        return None
    distinct = {v.strip() for v in values}
    if len(distinct) > 1:
        raise Refused(400, f"Content-Length is given {len(values)} times with different values")
    (text,) = distinct
    if not text.isascii() or not text.isdigit():
        raise Refused(400, f"Content-Length {text!r} is not a byte count")
    length = int(text)
    if length > MAX_BODY:
        raise Refused(413, f"the body is {length} bytes; at most {MAX_BODY} (16 MiB) are accepted")
    return length


def read_chunked(stream: io.BufferedIOBase) -> bytes:
    """A chunked body, read chunk by chunk and refused (413) as soon as it passes MAX_BODY."""
    body = bytearray()
    while True:
        line = stream.readline(1024)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
            raise Refused(400, f"malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if len(body) + size > MAX_BODY:
            raise Refused(413, f"the body is over {MAX_BODY} bytes (16 MiB), the most accepted")
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers are not used
            return bytes(body)
        chunk = stream.read(size)
        if len(chunk) < size:
            raise Refused(400, "the body ended inside a chunk")
        body += chunk
        stream.readline(1024)  # the CRLF after the chunk


def records(media_type: str, body: bytes) -> list[Any]:
    """The records a body holds: a JSON object or list, or the rows of a CSV with a header."""
    if media_type == _CSV:
        try:
            return csv_records(body.decode("utf-8-sig"))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise Refused(400, f"the body is not CSV: {exc}") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"body is not JSON: {exc}") from None
    return data if isinstance(data, list) else [data]


class _Server(ThreadingHTTPServer):
    """A threading HTTP server whose listen backlog holds a burst of connections.

    socketserver's default backlog is 5: under load, connections past it had
    their handshake finished by the kernel but were never accepted, so the
    request sent on them got no answer; a router in front of the source then
    answered 502 ("closed the connection without answering") after about a
    second, for a message the client must assume lost.
    """

    request_queue_size = 1024
    daemon_threads = True


class HttpSource:
    """POST JSON or CSV to ``path``; answered 202 once the messages are published."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.inbox: queue.Queue[tuple[list[Message], threading.Event]] = queue.Queue(maxsize=_INBOX)
        token: str = context.options.get("auth-token") or ""
        self.token = TokenCheck(token) if token else None
        port = context.options["port"] or context.port or 0
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        context.log.info(
            "http source listening on 127.0.0.1:%d%s", self.port, context.options["path"]
        )

    def check(self, handler: BaseHTTPRequestHandler) -> tuple[str, bytes]:
        """The media type and body of an acceptable POST, or Refused saying what is wrong."""
        check_origin(handler.headers.get("Origin"), handler.headers.get("Host"))
        if self.token is not None:
            scheme, _, given = (handler.headers.get("Authorization") or "").partition(" ")
            if scheme != "Bearer" or not self.token.matches(given):
                raise Refused(401, "this source needs 'Authorization: Bearer <its --auth-token>'")
        media_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type not in (_JSON, _CSV):
            raise Refused(
                415,
                f"Content-Type {media_type or '(none)'!r} is not accepted; "
                f"send {_JSON} (an object or a list of objects) or {_CSV} (a header row)",
            )
        length = content_length(handler.headers.get_all("Content-Length") or [])
        encoding = (handler.headers.get("Transfer-Encoding") or "").strip().lower()
        if encoding:
            if encoding != "chunked" or length is not None:
                raise Refused(400, f"Transfer-Encoding {encoding!r} is not accepted here")
            return media_type, read_chunked(handler.rfile)
        if length is None:
            raise Refused(411, "the request needs a Content-Length (or a chunked body)")
        body = handler.rfile.read(length)
        if len(body) < length:
            raise Refused(400, f"the body ended after {len(body)} of {length} bytes")
        return media_type, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        source = self
        path = self.context.options["path"]

        class Handler(BaseHTTPRequestHandler):
            timeout = _READ_TIMEOUT  # a client that stops sending does not hold a thread

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request would drown the app's own log

            def reply(self, status: int, body: dict[str, Any], close: bool = False) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 503:  # refused, not lost: the client may send it again
                    self.send_header("Retry-After", _RETRY_AFTER)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="stream"')
                if close:  # the rest of a refused body is not read
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                status = source.context.status
                if self.path == "/health":
                    self.reply(200, {"status": "ok"})
                elif self.path == "/status" and status and "X-Forwarded-For" not in self.headers:
                    # For the platform on loopback, not for whoever reaches the route.
                    self.reply(200, dict(status()))
                else:
                    self.reply(405, {"error": f"POST JSON to {path}"})

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != path:
                    self.reply(404, {"error": f"no route {self.path}; POST JSON to {path}"}, True)
                    return
                try:
                    items = records(*source.check(self))
                except Refused as exc:
                    self.reply(exc.status, {"error": str(exc)}, close=True)
                    return
                except OSError:  # the client stopped sending (timeout) or went away
                    self.close_connection = True
                    return
                done = threading.Event()
                try:
                    source.inbox.put(([Message(i) for i in items], done), timeout=_QUEUE_WAIT)
                except queue.Full:
                    self.reply(
                        503, {"error": "the stream is not keeping up; nothing was published, retry"}
                    )
                    return
                if done.wait(_PUBLISH_WAIT):
                    self.reply(202, {"accepted": len(items)})
                else:
                    self.reply(503, {"error": "the message could not be published in time"})

        return Handler

    def batches(self) -> Iterator[list[Message]]:
        while not self.context.stopping.is_set():
            try:
                messages, done = self.inbox.get(timeout=_TICK)
            except queue.Empty:
                continue
            # The generator resumes only after the runtime has published the batch.
            yield messages
            done.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
