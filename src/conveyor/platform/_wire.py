"""HTTP/1.1 wire helpers for the router: request heads, header rules, error bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "HOP_BY_HOP",
    "Head",
    "error_response",
    "framing",
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


def framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, frozenset[bytes]]:
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
