"""Waiting for what a test cannot await: call a check until it holds, or fail saying what.

Every polling loop of the suite goes through here, so the bound, the pace and
the failure message are written once::

    pid = eventually(lambda: read_pid(path), what="the server to write its pid")

A check may do the waiting itself (a broker's ``receive(timeout=...)``); give it
``interval=0`` then. Where the assertion after the wait says more than a
timeout would (it compares what did arrive), use :func:`poll`, which returns
the last value instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["PATIENCE", "eventually", "eventually_async", "poll"]

T = TypeVar("T")

#: A generous bound for what normally takes well under a second on a loaded machine.
PATIENCE = 60.0
#: How long to let the system work between two checks.
INTERVAL = 0.05


def poll(check: Callable[[], T], *, timeout: float = PATIENCE, interval: float = INTERVAL) -> T:
    """``check``'s first truthy value, or its last value once ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(interval)


def eventually(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float = PATIENCE,
    interval: float = INTERVAL,
) -> T:
    """``check``'s first truthy value; an AssertionError naming ``what`` after ``timeout`` s."""
    result = poll(check, timeout=timeout, interval=interval)
    if not result:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return result


async def eventually_async(
    check: Callable[[], T | None],
    *,
    what: str,
    timeout: float = PATIENCE,
    interval: float = INTERVAL,
) -> T:
    """:func:`eventually` inside an event loop: the loop keeps running between checks."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
