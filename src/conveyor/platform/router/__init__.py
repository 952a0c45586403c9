"""The router: an asyncio HTTP/1.1 reverse proxy in front of every app's instances.

The parts, one module each, importing one way only (each module names only
those after it)::

    _listener   Router: listens, sweeps the timeouts, closes
    _client     Client: one client connection, parsing its requests (httptools)
    _exchange   Exchange: one request, the instance chosen for it, its response
    _hub        Hub: what the connections share (routes, limits, instance pool, log)
    _upstream   Upstream: one pooled keep-alive connection to an instance
    _wire       request heads and a proxy's header rules
    _access     the access log's record
    _meter      Meter: requests, errors, ongoing and latency per app and revision

An upward call goes through a small protocol the lower module declares
(:class:`._exchange.Downstream`, :class:`._upstream.Receiver`), so no import
points back up. The HTTP rules shared with the scoring server (head size,
timeouts, Content-Length, error bodies, request ids, allowed hosts) live in
:mod:`conveyor._http`. The route table the controller fills is
:mod:`conveyor.platform.routes`.
"""

from __future__ import annotations

from conveyor.platform.router._access import AccessRecord
from conveyor.platform.router._listener import Router
from conveyor.platform.router._meter import Meter, Reading

__all__ = ["AccessRecord", "Meter", "Reading", "Router"]
