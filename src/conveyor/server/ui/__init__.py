"""The web dashboard, served by the control server under ``/ui``.

Server-rendered pages (Jinja2, autoescaped) with a vendored htmx for the parts
that refresh themselves; nothing is fetched from another origin. One module
per page family — :mod:`.login`, :mod:`.overview`, :mod:`.runs`, :mod:`.models`,
:mod:`.lineage`, :mod:`.apps`, :mod:`.streams`, :mod:`.tasks` — on what they share
(:mod:`.context`). The control API's token guard lets ``/ui`` through; every
page here checks the session cookie itself, and every action is a POST
carrying the session's CSRF token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from conveyor.errors import ConveyorError
from conveyor.server._common import status_for
from conveyor.server.ui import (
    apps,
    lineage,
    login,
    models,
    overview,
    run_actions,
    run_files,
    run_repro,
    runs,
    streams,
)
from conveyor.server.ui import tasks as task_pages
from conveyor.server.ui.context import Ui, handle_refusals
from conveyor.server.ui.render import SecurityHeaders, page
from conveyor.server.ui.session import Sessions

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.orchestrate import StreamService
    from conveyor.orchestrate.task_schedules import TaskScheduler
    from conveyor.orchestrate.tasks import TaskService
    from conveyor.platform.controller import Controller

__all__ = ["dashboard"]

log = logging.getLogger("conveyor.server.ui")


def dashboard(
    controller: Controller,
    service: StreamService,
    tasks: TaskService,
    schedules: TaskScheduler,
    token: str,
    settings: Settings,
) -> ASGIApp:
    """The dashboard as an ASGI app to mount at ``/ui``."""
    ui = Ui(controller, service, Sessions(token), tasks, schedules, settings)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    handle_refusals(app)

    @app.exception_handler(ConveyorError)
    async def conveyor_error(_request: Request, exc: ConveyorError) -> HTMLResponse:
        return page(
            "error.html", status_for(exc), title="Not possible", message=exc.message, hint=exc.hint
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> HTMLResponse:
        log.exception("dashboard request failed")
        return page("error.html", 500, title="Internal error", message=repr(exc))

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    pages = (
        login,
        overview,
        runs,
        run_actions,
        run_files,
        run_repro,
        models,
        lineage,
        apps,
        streams,
        task_pages,
    )
    for module in pages:
        app.include_router(module.routes(ui))
    return SecurityHeaders(app)
