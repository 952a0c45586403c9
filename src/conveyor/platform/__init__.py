"""The platform: runs app instances, health-checks and restarts them, routes requests to them.

A push walks: :class:`AppSpec` (the manifest, the request, the revision) →
:class:`Controller` (desired state, revisions) → the app's :class:`AppKind`
(staging, the command) → a :class:`Release` on a :class:`Target` (the local
one: :class:`LocalTarget`, the supervisor and the route table).

The public surface is below; the modules behind it may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.clock import Clock, FakeClock, SystemClock
from conveyor.platform.errors import (
    DeployError,
    IllegalTransition,
    ManifestError,
    PlatformError,
    SpawnError,
    StagingError,
)
from conveyor.platform.health import HealthCheck
from conveyor.platform.instances import InstanceState
from conveyor.platform.logs import LogBuffer, LogLine
from conveyor.platform.manifest import Manifest, load_manifest, parse_manifest
from conveyor.platform.policy import AutoscalingSpec, ScalingRule
from conveyor.platform.router import AccessRecord, Router
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec
from conveyor.platform.staging import Droplet, stage
from conveyor.platform.supervisor import Event, EventSink, Instance, InstanceSpec, Supervisor
from conveyor.platform.target import InstanceStatus, LaunchResult, Release, Target

if TYPE_CHECKING:
    from conveyor.platform.controller import Controller, Deployment, Progress
    from conveyor.platform.droplets import check_upload_path, files_digest
    from conveyor.platform.instance_env import MINIMAL_PATH
    from conveyor.platform.isolation import app_uid
    from conveyor.platform.kinds import (
        AppKind,
        Files,
        Launch,
        Staging,
        kind_named,
        register_kind,
    )
    from conveyor.platform.kubernetes.jobs import job_name
    from conveyor.platform.kubernetes.target import KubernetesTarget
    from conveyor.platform.local import LocalTarget
    from conveyor.platform.views import describe as describe_app

#: Imported on first use: they pull in the registry (SQLAlchemy) and the app kinds, which
#: `conveyor push`, reading a manifest through this package, does not need.
_LAZY = {
    "AppKind": ("conveyor.platform.kinds", "AppKind"),
    "Files": ("conveyor.platform.kinds", "Files"),
    "Launch": ("conveyor.platform.kinds", "Launch"),
    "Staging": ("conveyor.platform.kinds", "Staging"),
    "kind_named": ("conveyor.platform.kinds", "kind_named"),
    "register_kind": ("conveyor.platform.kinds", "register_kind"),
    "Controller": ("conveyor.platform.controller", "Controller"),
    "Deployment": ("conveyor.platform.controller", "Deployment"),
    "LocalTarget": ("conveyor.platform.local", "LocalTarget"),
    "KubernetesTarget": ("conveyor.platform.kubernetes.target", "KubernetesTarget"),
    "job_name": ("conveyor.platform.kubernetes.jobs", "job_name"),
    "Progress": ("conveyor.platform.controller", "Progress"),
    "MINIMAL_PATH": ("conveyor.platform.instance_env", "MINIMAL_PATH"),
    "app_uid": ("conveyor.platform.isolation", "app_uid"),
    "check_upload_path": ("conveyor.platform.droplets", "check_upload_path"),
    "describe_app": ("conveyor.platform.views", "describe"),
    "files_digest": ("conveyor.platform.droplets", "files_digest"),
}

__all__ = [
    "MINIMAL_PATH",
    "AccessRecord",
    "AppKind",
    "AppSpec",
    "AutoscalingSpec",
    "Clock",
    "Controller",
    "CrashBackoff",
    "DeployError",
    "Deployment",
    "Droplet",
    "Event",
    "EventSink",
    "FakeClock",
    "Files",
    "HealthCheck",
    "HealthCheckSpec",
    "IllegalTransition",
    "Instance",
    "InstanceSpec",
    "InstanceState",
    "InstanceStatus",
    "KubernetesTarget",
    "Launch",
    "LaunchResult",
    "LocalTarget",
    "LogBuffer",
    "LogLine",
    "Manifest",
    "ManifestError",
    "PlatformError",
    "Progress",
    "Release",
    "Route",
    "RouteSpec",
    "RouteTable",
    "Router",
    "ScalingRule",
    "SpawnError",
    "Staging",
    "StagingError",
    "Supervisor",
    "SystemClock",
    "Target",
    "app_uid",
    "check_upload_path",
    "describe_app",
    "files_digest",
    "job_name",
    "kind_named",
    "load_manifest",
    "parse_manifest",
    "register_kind",
    "stage",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
