"""The router's connections to instances: one protocol per pooled keep-alive connection.

The pool itself (take, release, the idle cap) lives on :class:`._hub.Hub`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

__all__ = ["Receiver", "Upstream"]


class Receiver(Protocol):
    """What an instance connection needs from the exchange it is lent to."""

    def response_data(self, data: bytes) -> None:
        """Bytes of the instance's response."""

    def upstream_lost(self) -> None:
        """The instance closed the connection (or it broke)."""

    def upstream_full(self, full: bool) -> None:
        """The connection's write buffer filled (stop reading the request body) or drained."""


class Upstream(asyncio.Protocol):
    """One keep-alive connection to an instance, lent to one exchange at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.exchange: Receiver | None = None
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
            self.exchange.upstream_full(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_full(False)

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
