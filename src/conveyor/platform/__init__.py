"""The platform: runs app instances, health-checks and restarts them, routes requests to them.

The public surface is below; the modules behind it may change.
"""

from __future__ import annotations

from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.clock import Clock, FakeClock, SystemClock
from conveyor.platform.errors import (
    IllegalTransition,
    ManifestError,
    PlatformError,
    SpawnError,
    StagingError,
)
from conveyor.platform.health import HealthCheck
from conveyor.platform.instances import InstanceState
from conveyor.platform.kinds import AppKind, Launch, kind_named, register_kind
from conveyor.platform.logs import LogBuffer, LogLine
from conveyor.platform.manifest import Manifest, load_manifest, parse_manifest
from conveyor.platform.router import AccessRecord, Router
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec
from conveyor.platform.staging import Droplet, stage
from conveyor.platform.supervisor import Event, EventSink, Instance, InstanceSpec, Supervisor

__all__ = [
    "AccessRecord",
    "AppKind",
    "AppSpec",
    "Clock",
    "CrashBackoff",
    "Droplet",
    "Event",
    "EventSink",
    "FakeClock",
    "HealthCheck",
    "HealthCheckSpec",
    "IllegalTransition",
    "Instance",
    "InstanceSpec",
    "InstanceState",
    "Launch",
    "LogBuffer",
    "LogLine",
    "Manifest",
    "ManifestError",
    "PlatformError",
    "Route",
    "RouteSpec",
    "RouteTable",
    "Router",
    "SpawnError",
    "StagingError",
    "Supervisor",
    "SystemClock",
    "kind_named",
    "load_manifest",
    "parse_manifest",
    "register_kind",
    "stage",
]
