"""Configuration changes to an app's spec (set-env, bind-service): the new spec and what changed.

Each returns the changed spec and the description its revision is recorded
with; the controller (:meth:`.controller.Controller.set_env`, ``bind``) makes
the revision, which runs at the next ``restart``::

    spec, description = with_env(spec, {"LEVEL": "debug"}, ["OLD"])   # "set-env LEVEL -OLD"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from conveyor.errors import NotFoundError, UsageError
from conveyor.platform.spec import AppSpec

__all__ = ["with_env", "with_service"]


def with_env(spec: AppSpec, values: Mapping[str, str], unset: Sequence[str]) -> tuple[AppSpec, str]:
    """``spec`` with ``values`` set and ``unset`` removed (each must be there)."""
    env = dict(spec.env)
    missing = [k for k in unset if k not in env]
    if missing:
        raise UsageError(f"app {spec.name!r} has no variable {', '.join(missing)} to unset")
    env.update(values)
    for key in unset:
        env.pop(key)
    names = [*values, *(f"-{k}" for k in unset)]
    return dataclasses.replace(spec, env=env), "set-env " + " ".join(names)


def with_service(
    spec: AppSpec, service: str, *, bound: bool, known: Collection[str]
) -> tuple[AppSpec, str]:
    """``spec`` with ``service`` (one of ``known``) bound, or unbound."""
    name = spec.name
    services = list(spec.services)
    if bound:
        if service not in known:
            raise NotFoundError(
                f"there is no service named {service!r}",
                hint=f"Create it first: conveyor create-service {service} -p '{{...}}'",
            )
        if service in services:
            raise UsageError(f"service {service!r} is already bound to {name!r}")
        services.append(service)
    else:
        if service not in services:
            raise UsageError(f"service {service!r} is not bound to {name!r}")
        services.remove(service)
    changed = dataclasses.replace(spec, services=tuple(services))
    return changed, f"{'bind' if bound else 'unbind'}-service {service}"
