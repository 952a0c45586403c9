"""What every HTTP connection Conveyor serves has in common: its transport, reading paused or not.

Shared by the scoring service's server (:mod:`conveyor.serving.wire`) and the
platform's router (:mod:`conveyor.platform.router`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

__all__ = ["MAX_HEAD", "Connection"]

#: A request head (start line and headers) larger than this is refused with 431.
MAX_HEAD = 64 * 1024


class Connection(asyncio.Protocol):
    """An asyncio protocol that knows whether its peer is gone and whether reading is paused."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.gone = False
        self.paused = False
        #: Bytes of the current request's head so far (reset by the parser's message begin).
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True

    @property
    def head_too_large(self) -> bool:
        return self.head_bytes > MAX_HEAD

    def count_head(self, size: int) -> None:
        """Add ``size`` bytes to the request head; past MAX_HEAD, stop the parser (answer 431)."""
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD:
            raise ValueError("head too large")

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None and not self.gone:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.gone:
            self.paused = False
            self.transport.resume_reading()

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.gone:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flushes what was written first

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
