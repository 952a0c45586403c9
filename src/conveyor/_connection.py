"""What every HTTP connection Conveyor serves has in common: its transport, reading paused or not.

Shared by the scoring service's server (:mod:`conveyor.serving.wire`) and the
platform's router (:mod:`conveyor.platform.router`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

__all__ = ["Connection"]


class Connection(asyncio.Protocol):
    """An asyncio protocol that knows whether its peer is gone and whether reading is paused."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.gone = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True

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
