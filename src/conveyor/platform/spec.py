"""The app spec: what one revision of an app runs, in one typed shape from manifest to registry.

The manifest reader builds an :class:`AppSpec` (with precise file:line:col
messages of its own), the CLI sends :meth:`AppSpec.to_json` as the push
body, the control API validates that body against the same dataclasses
(pydantic reads them, and the ``Annotated`` bounds below are its extra
limits), and the registry stores :meth:`AppSpec.to_json` again, read back by
:meth:`AppSpec.from_json`. What differs between app kinds (a model, a command,
a stream app ...) is decided by the kind's strategy in :mod:`.kinds`; the
spec only says which kind it is and carries the kind's own ``options``.

>>> spec = AppSpec(name="iris", model="run:3f2a9c/model")
>>> spec.kind, AppSpec.from_json("iris", spec.to_json()) == spec
('model', True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from conveyor.platform.health import CheckType, check_type
from conveyor.platform.policy import AutoscalingSpec

if TYPE_CHECKING:
    from conveyor.platform.health import HealthCheck

__all__ = ["MAX_INSTANCES", "AppSpec", "CanaryPolicy", "HealthCheckSpec", "RouteSpec"]

#: Most instances of one app.
MAX_INSTANCES = 64
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"[a-z0-9.-]{1,253}")
_PATH = re.compile(r"/([^\s?#]*[^\s?#/])?")
#: Unknown fields are refused when a request body is validated against these classes.
_STRICT: dict[str, Any] = {"extra": "forbid"}


class _Bounds:
    """``Annotated`` metadata: limits pydantic enforces on a request (and shows in the schema).

    Like the ``_Checked`` below, it reaches pydantic through the hook pydantic
    looks for, so neither pydantic nor annotated-types is imported by the CLI.
    """

    def __init__(self, **limits: float) -> None:
        self.limits = limits  # core-schema keys: gt, ge, le (numbers), min_length (text)

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        schema = handler(source)
        schema.update(self.limits)
        return schema


_SECONDS = Annotated[float, _Bounds(gt=0, le=3600)]
_TEXT = Annotated[str, _Bounds(min_length=1)]


class _Checked:
    """``Annotated`` metadata: pydantic runs ``check`` on the field (its ValueError is a 400)."""

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))


def _known_kind(name: str) -> str:
    from conveyor.platform.kinds import kind_named

    kind_named(name)  # raises ValueError naming the known kinds
    return name


@dataclass(frozen=True)
class RouteSpec:
    """A host name and/or path prefix that should lead to the app."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    host: str | None = None
    path: str | None = None
    strip_prefix: bool = False

    def __post_init__(self) -> None:
        if self.host is None and self.path is None:
            raise ValueError("a route needs a host, a path or both")
        if self.host is not None and not _HOST.fullmatch(self.host):
            raise ValueError(f"{self.host!r} is not a host name (a-z, 0-9, '.' and '-')")
        if self.path is not None and not _PATH.fullmatch(self.path):
            raise ValueError(f"{self.path!r} must start with '/' and not end with one")


@dataclass(frozen=True)
class HealthCheckSpec:
    """A ``health-check`` block: its type (:data:`~.health.CheckType`), endpoint and seconds."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    type: CheckType = "port"
    endpoint: str = "/"
    timeout: _SECONDS = 60.0
    interval: _SECONDS = 10.0
    #: How long one probe may take (Cloud Foundry's ``health-check-invocation-timeout``).
    invocation_timeout: _SECONDS = 1.0

    def __post_init__(self) -> None:
        check_type(self.type)
        if not self.endpoint.startswith("/"):
            raise ValueError(f"health-check endpoint {self.endpoint!r} must start with '/'")
        if not (self.timeout > 0 and self.interval > 0 and self.invocation_timeout > 0):
            raise ValueError(
                "health-check timeout, interval and invocation timeout must be positive seconds"
            )

    def to_check(self) -> HealthCheck:
        """The supervisor's definition of this check."""
        from conveyor.platform.health import HealthCheck

        return HealthCheck(
            self.type, self.endpoint, self.timeout, self.interval, self.invocation_timeout
        )


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary starts and, when asked, how it ends by itself.

    >>> policy = CanaryPolicy(weight=10, promote_after=300)
    >>> policy.window, policy.max_error_rate, policy.max_p95_ratio
    (10.0, 5.0, 2.0)
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    #: Percent of requests the new revision gets at first.
    weight: Annotated[int, _Bounds(ge=1, le=99)] = 10
    #: Seconds of health after which it is promoted; None: only ``conveyor canary APP promote``.
    promote_after: Annotated[float, _Bounds(gt=0, le=7 * 86400)] | None = None
    #: Rolled back when its error rate (%) exceeds the current revision's by more than this.
    max_error_rate: Annotated[float, _Bounds(ge=0, le=100)] = 5.0
    #: ... or when its p95 latency exceeds the current revision's this many times.
    max_p95_ratio: Annotated[float, _Bounds(ge=1, le=1000)] = 2.0
    #: A window in which the new revision served fewer requests joins the next one.
    min_requests: Annotated[int, _Bounds(ge=1, le=1_000_000)] = 20
    #: Seconds per window the watcher judges.
    window: Annotated[float, _Bounds(gt=0, le=3600)] = 10.0
    #: Whether the watcher rolls back by itself (False: it only reports).
    rollback: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.weight <= 99:
            raise ValueError(f"a canary's weight is 1-99 percent, not {self.weight}")
        for name in ("promote_after", "window"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"canary {name.replace('_', '-')} must be positive seconds")
        if not 0 <= self.max_error_rate <= 100:
            raise ValueError("canary max-error-rate is a percentage (0-100)")
        if not self.max_p95_ratio >= 1:
            raise ValueError("canary max-p95-ratio must be at least 1")
        if self.min_requests < 1:
            raise ValueError("canary min-requests must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "promote_after": self.promote_after,
            "max_error_rate": self.max_error_rate,
            "max_p95_ratio": self.max_p95_ratio,
            "min_requests": self.min_requests,
            "window": self.window,
            "rollback": self.rollback,
        }


_CHECK = HealthCheckSpec()
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class AppSpec:
    """One app's configuration: what a manifest entry says and a revision runs.

    ``kind`` names the app's strategy (:mod:`.kinds`); left empty it is
    ``model`` when ``model`` is given, else ``command``. ``path`` is the
    command app's source folder on the pushing machine (absolute when the
    manifest was loaded from a file) and never leaves it; ``requirements`` is
    relative to it. ``routes`` is None for the platform's default routes;
    ``()`` means no route at all (a worker). ``options`` holds what only the
    kind reads (a stream app's launch spec, for one).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    name: _TEXT
    model: _TEXT | None = None
    command: _TEXT | None = None
    path: Path | None = None
    requirements: PurePosixPath | None = None
    instances: Annotated[int, _Bounds(ge=0, le=MAX_INSTANCES)] = 1
    memory: Annotated[int, _Bounds(gt=0)] | None = None
    #: Disk an instance may fill, in bytes (recorded and told to the app, not enforced).
    disk: Annotated[int, _Bounds(gt=0)] | None = None
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    routes: tuple[RouteSpec, ...] | None = None
    health_check: HealthCheckSpec = _CHECK
    #: Checked all along: failing takes the instance out of routing, without a restart.
    readiness_check: HealthCheckSpec | None = None
    services: tuple[str, ...] = ()
    #: Binding parameters by service: they join that service's credentials for this app.
    service_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    kind: Annotated[str, _Checked(_known_kind)] = ""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    #: How the platform scales the app by itself (:mod:`.policy`); None: only by hand.
    autoscaling: AutoscalingSpec | None = None
    #: A push onto a running revision starts as a canary with this policy (:mod:`.canary`).
    canary: CanaryPolicy | None = None
    #: Line of the manifest where this app starts, for later messages (route taken, ...).
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "model" if self.model is not None else "command")
        for key in self.env:
            if not ENV_KEY.fullmatch(key):
                raise ValueError(f"{key!r} is not a variable name; use A-Z, 0-9 and '_'")
        if self.requirements is not None and (
            self.requirements.is_absolute() or ".." in self.requirements.parts
        ):
            raise ValueError(
                f"requirements {str(self.requirements)!r} must be a file inside the app's folder"
            )
        for service in self.services:
            if not SERVICE_NAME.fullmatch(service):
                raise ValueError(f"{service!r} is not a valid service name")
        for service in self.service_parameters:
            if service not in self.services:
                raise ValueError(f"parameters for {service!r}, which the app is not bound to")

    @property
    def default_health(self) -> bool:
        """Whether the health check is the default one (the kind's own default then applies)."""
        return self.health_check == _CHECK

    def to_json(self) -> dict[str, Any]:
        """The spec as the push body and the registry hold it (no local path, no line)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "command": self.command,
            "requirements": None if self.requirements is None else str(self.requirements),
            "instances": self.instances,
            "memory": self.memory,
            "disk": self.disk,
            "env": dict(self.env),
            "routes": None if self.routes is None else [_route_json(r) for r in self.routes],
            "health_check": _check_json(self.health_check),
            "readiness_check": None
            if self.readiness_check is None
            else _check_json(self.readiness_check),
            "services": list(self.services),
            "service_parameters": {k: dict(v) for k, v in self.service_parameters.items()},
            "options": dict(self.options),
            "autoscaling": None if self.autoscaling is None else self.autoscaling.to_json(),
            "canary": None if self.canary is None else self.canary.to_json(),
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> AppSpec:
        """Read a spec :meth:`to_json` wrote, or one an earlier version stored.

        Earlier revisions have no ``name`` and keep a kind's own fields at the
        top (a stream app's ``stream_app``, ``stream``, ``position``): those go
        into ``options``, where the kind reads them today.
        """
        own = {f.name for f in fields(cls)}
        legacy = {k: v for k, v in data.items() if k not in own}
        requirements = data.get("requirements")
        check, ready = data.get("health_check"), data.get("readiness_check")
        scaling = data.get("autoscaling")
        return cls(
            name=str(data.get("name") or name),
            kind=str(data.get("kind") or ""),
            model=data.get("model"),
            command=data.get("command"),
            requirements=None if requirements is None else PurePosixPath(requirements),
            instances=int(data.get("instances", 1)),
            memory=data.get("memory"),
            disk=data.get("disk"),
            env=dict(data.get("env") or {}),
            routes=None
            if data.get("routes") is None
            else tuple(RouteSpec(**r) for r in data["routes"]),
            health_check=_CHECK if not check else HealthCheckSpec(**check),
            readiness_check=None if not ready else HealthCheckSpec(**ready),
            services=tuple(data.get("services") or ()),
            service_parameters=dict(data.get("service_parameters") or {}),
            options={**legacy, **(data.get("options") or {})},
            autoscaling=None if not scaling else AutoscalingSpec.from_json(scaling),
            canary=CanaryPolicy(**data["canary"]) if data.get("canary") else None,
        )


def _route_json(route: RouteSpec) -> dict[str, Any]:
    return {"host": route.host, "path": route.path, "strip_prefix": route.strip_prefix}


def _check_json(check: HealthCheckSpec) -> dict[str, Any]:
    return {
        "type": check.type,
        "endpoint": check.endpoint,
        "timeout": check.timeout,
        "interval": check.interval,
        "invocation_timeout": check.invocation_timeout,
    }
