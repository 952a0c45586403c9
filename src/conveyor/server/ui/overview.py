"""The overview: what is running, what failed recently, the latest runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.platform import views
from conveyor.server.ui.context import Ui

__all__ = ["routes"]

_RECENT = 10


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()

    @api.get("/")
    async def overview(request: Request) -> Response:
        ui.session(request)
        registry = ui.controller.state.registry
        recent = await run_in_threadpool(registry.list_runs, limit=200)
        apps = views.list_apps(ui.controller)
        streams = ui.streams.list_streams()
        failed_runs = [r for r in recent if r.status.value in ("FAILED", "KILLED")][:_RECENT]
        return ui.view(
            request,
            "overview.html",
            apps=apps,
            streams=streams,
            running_runs=[r for r in recent if r.status.value == "RUNNING"],
            failed_runs=failed_runs,
            crashed_apps=[a for a in apps if a["state"] == "crashed"],
            recent=recent[:_RECENT],
        )

    return api
