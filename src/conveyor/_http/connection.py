"""What every HTTP connection Conveyor serves has in common: its transport, limits and timeouts.

The base of the scoring server's connections (:mod:`conveyor.serving.wire`)
and of the router's client connections (:mod:`conveyor.platform.router`).
Both enforce their timeouts with one periodic sweep over their connections
rather than a timer per request (arming and cancelling timers showed up in
both profiles); :meth:`Connection.lapsed` is the rule that sweep applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

__all__ = ["IDLE", "MAX_HEAD", "SLOW", "Connection"]

#: A request head (start line and headers) larger than this is refused with 431.
MAX_HEAD = 64 * 1024

#: :meth:`Connection.lapsed`: the request being read took too long (answer 408 and close).
SLOW = 1
#: :meth:`Connection.lapsed`: nothing was asked for too long between requests (close).
IDLE = 2


class Connection(asyncio.Protocol):
    """An asyncio protocol that knows whether its peer is gone, reading is paused, time is up."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.gone = False
        self.paused = False
        #: Bytes of the current request's head so far (reset by the parser's message begin).
        self.head_bytes = 0
        #: Clock time of the first byte of the request being read; 0.0 while none is.
        self.reading_since = 0.0
        #: Clock time the connection opened or last finished answering a request.
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True

    # -- limits -------------------------------------------------------------------

    @property
    def head_too_large(self) -> bool:
        return self.head_bytes > MAX_HEAD

    def count_head(self, size: int) -> None:
        """Add ``size`` bytes to the request head; past MAX_HEAD, stop the parser (answer 431)."""
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD:
            raise ValueError("head too large")

    def lapsed(self, now: float, read_timeout: float, idle_timeout: float) -> int:
        """SLOW, IDLE or 0: whether a request is being read too slowly, or nothing is asked.

        A connection that opens and sends nothing counts as idle from the moment
        it opened, so neither a silent nor a half-sent request holds it for ever.
        """
        if self.reading_since:
            return SLOW if now - self.reading_since > read_timeout else 0
        return IDLE if now - self.last_active > idle_timeout else 0

    def check(self, now: float) -> None:
        """The sweep's visit: enforce this connection's timeouts (each server says how)."""

    # -- flow -----------------------------------------------------------------------

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
