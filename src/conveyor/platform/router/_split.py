"""The router's part in a canary: how each request to a split app ended, by revision.

Called once per finished exchange; for an app without a canary it is one
dictionary lookup. The split itself (weights, windows, p95) is
:mod:`conveyor.platform.split`; the watcher that judges it is
:mod:`conveyor.platform.canary`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.platform.router._exchange import Exchange

__all__ = ["observe"]


def observe(exchange: Exchange) -> None:
    """Count ``exchange`` against its instance's revision when its app's traffic is split."""
    match, backend = exchange.match, exchange.backend
    if match is None or backend is None or not exchange.status:
        return
    split = exchange.hub.table.split(match.app)
    if split is not None:
        split.observe(
            backend.revision, exchange.status, (time.perf_counter() - exchange.started) * 1000
        )
