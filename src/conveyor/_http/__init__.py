"""The HTTP/1.1 core shared by Conveyor's own two servers: the scoring server and the router.

llhttp (through httptools) parses; this package holds what Conveyor adds
on top, so that both stacks apply the same rules:

* :mod:`.connection` — the asyncio protocol base: transport, paused reading,
  the request-head size limit (431), and the header and idle timeouts.
* :mod:`.rules` — Content-Length validation, status reasons, response heads,
  JSON error bodies and request ids.
* :mod:`.hosts` — which ``Host`` names a local service answers (against DNS
  rebinding).

It imports nothing of Conveyor's, so ``serving``, ``platform`` and
``server`` can all use it.
"""

from __future__ import annotations

from conveyor._http.connection import MAX_HEAD, Connection
from conveyor._http.hosts import HostCheck
from conveyor._http.rules import (
    REASONS,
    RequestIds,
    content_length,
    error_response,
    response_head,
)

__all__ = [
    "MAX_HEAD",
    "REASONS",
    "Connection",
    "HostCheck",
    "RequestIds",
    "content_length",
    "error_response",
    "response_head",
]
