"""The platform: runs app instances, health-checks and restarts them, routes requests to them.

The public surface is below; the modules behind it may change.
"""

from __future__ import annotations

from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.clock import Clock, FakeClock, SystemClock
from conveyor.platform.errors import IllegalTransition, PlatformError, SpawnError
from conveyor.platform.health import HealthCheck
from conveyor.platform.instances import InstanceState
from conveyor.platform.logs import LogBuffer, LogLine
from conveyor.platform.router import AccessRecord, Router
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.supervisor import Event, EventSink, Instance, InstanceSpec, Supervisor

__all__ = [
    "AccessRecord",
    "Clock",
    "CrashBackoff",
    "Event",
    "EventSink",
    "FakeClock",
    "HealthCheck",
    "IllegalTransition",
    "Instance",
    "InstanceSpec",
    "InstanceState",
    "LogBuffer",
    "LogLine",
    "PlatformError",
    "Route",
    "RouteTable",
    "Router",
    "SpawnError",
    "Supervisor",
    "SystemClock",
]
