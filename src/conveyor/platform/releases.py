"""What a stored revision runs as: its routes and the Release a target deploys; push checks.

The controller (:mod:`.controller`) decides *when* a revision runs; this module
says *what* runs for it, from the registry's record alone::

    release = release_of(revision, state, platform_dir)   # command, env, health, routes ...
    check_push(spec, files, target=target, state=state, artifacts=blobs)  # before staging
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from conveyor.errors import NotFoundError, UsageError
from conveyor.platform.cfenv import cf_environment
from conveyor.platform.droplets import check_upload_path
from conveyor.platform.errors import PlatformError
from conveyor.platform.kinds import Files, kind_named
from conveyor.platform.routes import Route, overlaps
from conveyor.platform.spec import AppSpec
from conveyor.platform.target import Release, Target
from conveyor.store.apps import AppRepository, RevisionRecord
from conveyor.store.blobs import BlobStore
from conveyor.store.sealing import unseal_values

__all__ = ["app_routes", "check_push", "release_of", "revision_spec"]


def revision_spec(revision: RevisionRecord) -> AppSpec:
    """The typed spec of a stored revision."""
    return AppSpec.from_json(revision.app, revision.spec)


def app_routes(spec: AppSpec) -> list[Route]:
    """The app's routes in the route table: the manifest's, or the platform's default."""
    name = spec.name
    if spec.routes is None:  # the default: /<name> (prefix stripped) and <name>.localhost
        return [
            Route(name, path=f"/{name}", strip_prefix=True),
            Route(name, host=f"{name}.localhost"),
        ]
    return [Route(name, host=r.host, path=r.path, strip_prefix=r.strip_prefix) for r in spec.routes]


def check_push(
    spec: AppSpec,
    files: Files | None,
    *,
    target: Target,
    state: AppRepository,
    artifacts: BlobStore,
) -> None:
    """Refuse a push that cannot work before anything is staged or stopped."""
    name = spec.name
    for route in app_routes(spec):
        taken = target.route_owner(route)
        if taken is not None and taken != name:
            theirs = next((r for r in target.routes(taken) if overlaps(route, r)), None)
            if theirs is None or theirs.text == route.text:
                raise PlatformError(
                    f"route {route.text} is already taken by app {taken!r}",
                    hint=f"Choose another host or path for {name!r} in its manifest.",
                )
            raise PlatformError(
                f"route {route.text} overlaps route {theirs.text} of app {taken!r}: "
                f"{name!r} would take requests meant for {taken!r} (or the other way round)",
                hint=f"Choose a host or path for {name!r} that does not fall under "
                f"{theirs.text} (nor it under yours).",
            )
    known = state.services()
    for service in spec.services:
        if service not in known:
            raise NotFoundError(
                f"app {name!r} is bound to service {service!r}, which does not exist",
                hint=f"Create it first: conveyor create-service {service} -p '{{...}}'",
            )
    for path, entry in (files or {}).items():
        check_upload_path(path)
        if not artifacts.exists(str(entry.get("digest", ""))):
            raise UsageError(
                f"the file {path} of app {name!r} was not uploaded (no blob {entry.get('digest')})",
                hint="Upload every missing blob before pushing (conveyor push does this).",
            )
    kind_named(spec.kind).check(spec, files)


def release_of(revision: RevisionRecord, state: AppRepository, platform_dir: Path) -> Release:
    """What the target runs for ``revision``: its kind's command, the app's variables ...
    (the secrets the registry keeps sealed, in clear)."""
    spec = revision_spec(revision)
    box = state.secrets
    spec = dataclasses.replace(
        spec, env=unseal_values(box, spec.env), options=unseal_values(box, spec.options)
    )
    kind = kind_named(spec.kind)
    launch = kind.launch(spec, revision.droplet or {}, platform_dir)
    services = state.services()
    # Binding parameters join the service's credentials; the service's own values win.
    bound = {
        s: {**spec.service_parameters.get(s, {}), **services.get(s, {})} for s in spec.services
    }
    routes = app_routes(spec)
    env: dict[str, str] = {
        **spec.env,
        "CONVEYOR_APP": revision.app,
        "CONVEYOR_APP_REVISION": str(revision.number),
        "CONVEYOR_SERVICES": json.dumps(
            {"user-provided": [{"name": s, "credentials": c} for s, c in bound.items()]}
        ),
        **cf_environment(
            revision.app,
            revision.number,
            bound,
            [r.text for r in routes if r.host],
            memory=spec.memory,
            disk=spec.disk,
        ),
        **launch.env,
    }
    return Release(
        app=revision.app,
        revision=revision.number,
        command=launch.command,
        env=env,
        cwd=launch.cwd,
        health=kind.health_check(spec).to_check(),
        readiness=None if spec.readiness_check is None else spec.readiness_check.to_check(),
        memory=spec.memory,
        routes=tuple(routes),
        read_only=launch.read_only,
        read_write=launch.read_write,
    )
