"""The control API: a FastAPI app over one :class:`~conveyor.platform.controller.Controller`.

Thin by design: one module per resource, each a set of routes with its request
models beside them — :mod:`.apps`, :mod:`.blobs`, :mod:`.models`, :mod:`.services`,
:mod:`.streams` — on what they share (:mod:`._common`: strict bodies, errors as
JSON with a 4xx status, long operations as JSON lines). This module puts them
together, translates errors at the boundary and puts the token check
(:mod:`.auth`) in front of everything, the OpenAPI document included — except
the dashboard (:mod:`.ui`, under ``/ui``), which checks its own session cookie.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from conveyor.config import Settings
from conveyor.errors import ConveyorError
from conveyor.platform.controller import Controller
from conveyor.platform.kubernetes.models import artifact_roots
from conveyor.server import (
    apps,
    blobs,
    canaries,
    cluster_apps,
    cluster_streams,
    cluster_tasks,
    images,
    lineage,
    models,
    runs,
    services,
    streams,
    targets,
)
from conveyor.server._common import error_body, status_for
from conveyor.server.auth import TokenGuard
from conveyor.server.cluster_apps import BuilderFactory, cluster_target
from conveyor.server.ui import dashboard
from conveyor.store.targets import TargetRepository

__all__ = ["create_app"]

log = logging.getLogger("conveyor.server.api")


def create_app(
    controller: Controller,
    token: str,
    info: Callable[[], dict[str, Any]],
    shutdown: Callable[[], None],
    settings: Settings,
    *,
    image_builders: BuilderFactory | None = None,
) -> ASGIApp:
    """The control API; ``info`` describes the platform, ``shutdown`` asks it to stop.

    ``image_builders`` makes a Kubernetes target's image builder; without one, a push
    to a cluster needs an image built elsewhere (``push --target T --image APP=REF``).
    """
    from conveyor.orchestrate import StreamService
    from conveyor.server.tasks import task_routes, task_services

    api = FastAPI(
        title="Conveyor platform API",
        version="1",
        description="Push, scale and watch apps. Every request needs the bearer token.",
    )

    @api.exception_handler(ConveyorError)
    async def conveyor_error(_request: Request, exc: ConveyorError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    @api.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: still JSON, and the platform's log has the traceback.
        log.exception("control API request failed")
        return JSONResponse({"error": f"internal error: {exc!r}"}, 500)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, 400)

    @api.get("/v1/info", summary="What this platform is and where it listens", tags=["platform"])
    async def get_info() -> dict[str, Any]:
        return info()

    @api.post(
        "/v1/shutdown",
        status_code=202,
        summary="Stop every instance, then the platform",
        tags=["platform"],
    )
    async def post_shutdown() -> dict[str, str]:
        asyncio.get_running_loop().call_soon(shutdown)
        return {"status": "stopping"}

    api.include_router(blobs.routes(controller.artifacts))
    api.include_router(apps.routes(controller))
    api.include_router(canaries.routes(controller))
    api.include_router(services.routes(controller))
    api.include_router(images.routes(controller))
    api.include_router(models.routes(controller))
    api.include_router(runs.routes(controller.state.registry))
    roots = artifact_roots(settings)
    api.include_router(targets.routes(controller, roots))
    api.include_router(cluster_apps.routes(controller, image_builders, roots))
    service = StreamService(controller, settings=settings)
    api.include_router(streams.routes(service))
    api.include_router(cluster_streams.routes(service, image_builders, roots))
    target_registry = TargetRepository(controller.state.registry)
    tasks, schedules = task_services(
        controller,
        settings.home / "runs",
        clusters=lambda name: cluster_target(target_registry, name, image_builders),
    )
    api.include_router(task_routes(tasks, schedules))
    api.include_router(cluster_tasks.routes(tasks, schedules))
    api.include_router(lineage.routes(controller.state.registry, settings))
    api.mount("/ui", dashboard(controller, service, tasks, schedules, token, settings))
    return TokenGuard(api, token, open_prefix="/ui")
