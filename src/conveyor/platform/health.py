"""Health checks: what "healthy" means for an instance, and the probes that ask it.

Three kinds, as in Cloud Foundry: ``port`` (the default: a TCP connection to
the instance's ``PORT`` succeeds), ``process`` (the process is alive) and
``http`` (``GET endpoint`` answers 2xx). The same check first gates startup
(it must pass within ``timeout`` seconds) and then runs every ``interval``
seconds as liveness; an optional readiness check only moves the instance in
and out of routing.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from conveyor.errors import UsageError

__all__ = [
    "CHECK_TYPES",
    "ENDPOINT_TYPES",
    "CheckType",
    "HealthCheck",
    "HealthProbe",
    "NetworkProbe",
    "check_type",
]

#: Every kind of health check; a new one is added here (and probed below), nowhere else.
CheckType = Literal["port", "process", "http"]
CHECK_TYPES: tuple[str, ...] = get_args(CheckType)
#: The types that request a path (``endpoint``); the others ignore it.
ENDPOINT_TYPES = frozenset({"http"})


def check_type(name: str) -> None:
    """Raise ValueError unless ``name`` is a health-check type."""
    if name not in CHECK_TYPES:
        raise ValueError(
            f"health-check type {name!r} is unknown; use {', '.join(CHECK_TYPES[:-1])} "
            f"or {CHECK_TYPES[-1]}"
        )


@dataclass(frozen=True)
class HealthCheck:
    """One health check's definition (a manifest's ``health-check`` block)."""

    type: CheckType = "port"
    #: Path for ``http`` checks.
    endpoint: str = "/"
    #: Startup deadline: seconds from spawn for the first success.
    timeout: float = 60.0
    #: Seconds between checks once the instance is RUNNING.
    interval: float = 10.0
    #: How long one probe may take before it counts as a failure.
    invocation_timeout: float = 1.0
    #: Consecutive failures that count as "unhealthy" once RUNNING.
    failures: int = 1

    def __post_init__(self) -> None:
        try:
            check_type(self.type)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if not self.endpoint.startswith("/"):
            raise UsageError(
                f"health-check endpoint {self.endpoint!r} must be a path starting with '/'"
            )
        for name in ("timeout", "interval", "invocation_timeout"):
            if not getattr(self, name) > 0:
                raise UsageError(f"health-check {name} must be a positive number of seconds")
        if self.failures < 1:
            raise UsageError("health-check failures must be at least 1")


class HealthProbe(Protocol):
    """Asks an instance listening on ``host:port`` whether ``check`` passes.

    ``process`` checks never reach a probe: the supervisor knows whether its
    own child is alive.
    """

    async def __call__(self, check: HealthCheck, host: str, port: int) -> bool: ...


class NetworkProbe:
    """The real probe: a TCP connect, or an HTTP/1.1 GET over a fresh connection."""

    async def __call__(self, check: HealthCheck, host: str, port: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        try:
            if check.type != "http":
                return True
            writer.write(
                f"GET {check.endpoint} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "User-Agent: conveyor-health\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(b" ", 2)
            return len(parts) >= 2 and parts[1][:1] == b"2" and len(parts[1]) == 3
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
