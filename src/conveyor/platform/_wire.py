"""HTTP/1.1 wire helpers for the router: parser callbacks, header rules, error bodies.

httptools (llhttp) parses; these classes turn its callbacks into a queue of
events the router's coroutines consume, so a pipelined request that arrives
in the same read as the previous one is kept, not lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "HOP_BY_HOP",
    "Head",
    "ParserEvents",
    "ResponseHead",
    "error_response",
]

#: Headers that describe one connection, never forwarded (RFC 9110 §7.6.1),
#: plus the framing headers the router sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


@dataclass
class Head:
    """A request's start line and headers (names lower-cased)."""

    method: bytes
    url: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    #: Header names the client listed in ``Connection``: hop-by-hop too.
    connection_tokens: frozenset[bytes] = field(default_factory=frozenset)

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass
class ResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    connection_tokens: frozenset[bytes] = frozenset()


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, frozenset[bytes]]:
    length: int | None = None
    chunked = False
    tokens: frozenset[bytes] = frozenset()
    for key, value in headers:
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            tokens = frozenset(t.strip().lower() for t in value.split(b","))
    return length, chunked, tokens


class ParserEvents:
    """httptools callbacks, queued as ``("head", Head)``, ``("body", bytes)``, ``("end", None)``."""

    def __init__(self, *, response: bool = False) -> None:
        self.queue: deque[tuple[str, Any]] = deque()
        self.parser: Any = None
        self._response = response
        self._url = b""
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0

    def on_message_begin(self) -> None:
        self._url = b""
        self._reason = b""
        self._headers = []
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self.header_bytes += len(url)

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self.header_bytes += len(name) + len(value)

    def on_headers_complete(self) -> None:
        parser = self.parser
        length, chunked, tokens = _framing(self._headers)
        head: Head | ResponseHead
        if self._response:
            head = ResponseHead(
                parser.get_status_code(),
                self._reason,
                self._headers,
                parser.should_keep_alive(),
                length,
                chunked,
                tokens,
            )
        else:
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
        self.queue.append(("head", head))

    def on_body(self, body: bytes) -> None:
        self.queue.append(("body", body))

    def on_message_complete(self) -> None:
        self.queue.append(("end", None))


def error_response(
    status: int, message: str, request_id: str, *, close: bool, extra: dict[str, Any] | None = None
) -> bytes:
    """A complete HTTP/1.1 response with a JSON body naming the problem."""
    body = orjson.dumps(
        {"error": message, "status": status, "request_id": request_id, **(extra or {})}
    )
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"x-request-id: %s\r\n"
        % (status, REASONS.get(status, b"Error"), len(body), request_id.encode())
    )
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body
