"""HTTP/1.1 wire helpers for the router: request heads and the header rules of a proxy.

Error bodies, status reasons and Content-Length validation are the shared
core's (:mod:`conveyor._http`), so the router and the scoring server answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor._http import content_length

__all__ = ["HOP_BY_HOP", "Head", "framing"]

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
    """Content-Length (ValueError when it is not a count), chunked or not, Connection tokens."""
    length: int | None = None
    chunked = False
    tokens: frozenset[bytes] = frozenset()
    for key, value in headers:
        if key == b"content-length":
            length = content_length(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            tokens = frozenset(t.strip().lower() for t in value.split(b","))
    return length, chunked, tokens
