"""Apps: push, scale, configure, roll, stop and delete them; their revisions, events and logs.

The request models sit beside their routes. A push's ``spec`` is the
platform's own :class:`~conveyor.platform.spec.AppSpec`, validated by
pydantic: one spec from manifest to stored revision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from conveyor.errors import UsageError
from conveyor.platform import views
from conveyor.platform.canary import CanaryPolicy
from conveyor.platform.controller import Controller
from conveyor.platform.kinds import Files, kind_named
from conveyor.platform.logs import LogLine
from conveyor.platform.spec import ENV_KEY, MAX_INSTANCES, AppSpec
from conveyor.server._common import AppName, FileIn, Strict, files_of, ndjson, operation
from conveyor.server._pages import After, Limit, page

__all__ = ["routes"]


class PushIn(Strict):
    #: Validated against the platform's own dataclasses: one spec from manifest to revision.
    spec: AppSpec
    files: dict[str, FileIn] | None = None
    instances: int = Field(1, ge=0, le=MAX_INSTANCES)
    #: Run the new revision beside the current one, with a share of the requests (a canary).
    canary: CanaryPolicy | None = None


class ScaleIn(Strict):
    instances: int = Field(ge=0, le=MAX_INSTANCES)


class EnvIn(Strict):
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    #: Seal the values set in the registry whatever their names (secret-named ones always are).
    secret: bool = False


class RollbackIn(Strict):
    revision: int = Field(ge=1)


def routes(controller: Controller) -> APIRouter:
    api = APIRouter(tags=["apps"])

    @api.get("/v1/apps", summary="Every app: state, instances running/desired, routes, revision")
    async def list_apps(
        response: Response, limit: Limit = None, after: After = None
    ) -> list[Mapping[str, Any]]:
        apps = views.list_apps(controller)
        return page(apps, limit=limit, after=after, response=response, path="/v1/apps")

    @api.get("/v1/apps/{name}", summary="One app with its instances and recent events")
    async def get_app(name: AppName) -> dict[str, Any]:
        return views.describe(controller, name)

    @api.post("/v1/apps/{name}/push", summary="Stage and deploy a new revision (JSON lines)")
    async def push(name: AppName, body: PushIn) -> StreamingResponse:
        spec = body.spec
        files = files_of(body.files)
        _check_spec(name, spec, files)
        canary = controller.canaries.policy_for(spec, body.canary)
        if canary is None:
            controller.canaries.refuse_running(name, "a push")
        else:
            controller.canaries.check_start(spec)
        return operation(
            lambda progress: controller.push(spec, files, body.instances, progress, canary=canary)
        )

    @api.post("/v1/apps/{name}/scale", summary="Change the number of instances")
    async def scale(name: AppName, body: ScaleIn) -> dict[str, Any]:
        return asdict(await controller.scale(name, body.instances))

    @api.post("/v1/apps/{name}/env", summary="Set or unset variables (a revision for restart)")
    async def set_env(name: AppName, body: EnvIn) -> dict[str, int]:
        for key in [*body.set, *body.unset]:
            if not ENV_KEY.fullmatch(key):
                raise UsageError(f"{key!r} is not a variable name; use A-Z, 0-9 and '_'")
        revision = await controller.set_env(name, body.set, body.unset, secret=body.secret)
        return {"revision": revision}

    @api.post("/v1/apps/{name}/restart", summary="Roll onto the newest revision (JSON lines)")
    async def restart(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return operation(lambda progress: controller.restart(name, progress))

    @api.post("/v1/apps/{name}/restage", summary="Rebuild the droplet and roll (JSON lines)")
    async def restage(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return operation(lambda progress: controller.restage(name, progress))

    @api.post("/v1/apps/{name}/rollback", summary="Roll back to a kept revision (JSON lines)")
    async def rollback(name: AppName, body: RollbackIn) -> StreamingResponse:
        controller.state.revision(name, body.revision)
        return operation(lambda progress: controller.rollback(name, body.revision, progress))

    @api.post("/v1/apps/{name}/start", summary="Start a stopped app (JSON lines)")
    async def start(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return operation(lambda progress: controller.start_app(name, progress))

    @api.post("/v1/apps/{name}/stop", summary="Stop every instance; the app stays")
    async def stop(name: AppName) -> dict[str, Any]:
        return asdict(await controller.stop(name))

    @api.delete("/v1/apps/{name}", summary="Stop and remove the app, its revisions and events")
    async def delete(name: AppName) -> dict[str, str]:
        await controller.delete(name)
        return {"deleted": name}

    @api.get("/v1/apps/{name}/revisions", summary="The app's kept revisions")
    async def revisions(name: AppName) -> list[dict[str, Any]]:
        return views.revisions(controller, name)

    @api.get("/v1/apps/{name}/events", summary="The app's latest events, oldest first")
    async def events(
        name: AppName, limit: Annotated[int, Query(ge=1, le=10_000)] = 50
    ) -> list[dict[str, Any]]:
        controller.state.app(name)
        return [
            {
                "at": e.at,
                "kind": e.kind,
                "instance": e.instance,
                "revision": e.revision,
                "details": e.details,
            }
            for e in controller.state.events(name, limit=limit)
        ]

    @api.get("/v1/apps/{name}/logs", summary="Recent lines, then new ones if following")
    async def logs(
        name: AppName,
        recent: Annotated[int, Query(ge=0, le=100_000)] = 100,
        follow: bool = False,
    ) -> StreamingResponse:
        controller.state.app(name)
        buffer = controller.target.logs(name)
        kept = buffer.recent(recent)
        cursor = buffer.next_seq

        def encode(line: LogLine) -> bytes:
            return ndjson(
                {"index": line.index, "stream": line.stream, "text": line.text, "at": line.at}
            )

        async def lines() -> AsyncIterator[bytes]:
            for line in kept:
                yield encode(line)
            if follow:
                async for line in buffer.follow(cursor):
                    yield encode(line)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @api.post("/v1/droplets/gc", summary="Remove droplets no kept revision uses")
    async def collect_droplets(
        dry_run: bool = False, min_age: Annotated[float, Query(ge=0)] = 3600.0
    ) -> dict[str, Any]:
        report = await controller.collect_droplets(dry_run=dry_run, min_age=min_age)
        return {"removed": report.removed, "bytes": report.bytes, "dry_run": dry_run}

    return api


def _check_spec(name: str, spec: AppSpec, files: Files | None) -> None:
    """Refuse a spec no kind can run, before the stream of progress lines starts."""
    if spec.name != name:
        raise UsageError(f"the spec is of app {spec.name!r}, not of {name!r} as the path says")
    if spec.path is not None:
        raise UsageError(
            f"app {name!r}: 'path' is a folder on the pushing machine; upload its files instead"
        )
    if not kind_named(spec.kind).pushable:
        raise UsageError(f"app {name!r}: {spec.kind} apps are made by the platform, not pushed")
    kind_named(spec.kind).check(spec, files)
