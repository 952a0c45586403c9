"""Apps: their state, instances (refreshed live), revisions with rollback, scaling, events, logs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response, StreamingResponse

from conveyor.errors import ConveyorError, UsageError
from conveyor.platform import views
from conveyor.platform.controller import Deployment
from conveyor.platform.logs import LogLine
from conveyor.platform.spec import MAX_INSTANCES
from conveyor.server._common import APP_NAME
from conveyor.server.ui.context import Ui, back
from conveyor.server.ui.render import page
from conveyor.server.ui.session import Session

__all__ = ["routes"]

AppName = Annotated[str, Path(pattern=APP_NAME)]
#: Lines a log tail starts with before it follows.
TAIL = 200


def _sse(line: LogLine) -> bytes:
    data = orjson.dumps({"index": line.index, "stream": line.stream, "text": line.text})
    return b"id: " + str(line.seq).encode() + b"\ndata: " + data + b"\n\n"


async def _reported(session: Session, name: str, work: Awaitable[Deployment]) -> Response:
    """Run an action on the app, say on its page how it went, and show the page again."""
    try:
        done = await work
    except ConveyorError as exc:
        session.flash.append(("error", exc.message))
    else:
        session.flash.append(("ok", f"{name}: {done.message}"))
    return back(f"/ui/apps/{name}")


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    controller = ui.controller

    @api.get("/apps")
    async def apps_page(request: Request) -> Response:
        ui.session(request)
        return ui.view(request, "apps.html", apps=views.list_apps(controller))

    @api.get("/apps/{name}")
    async def app_page(request: Request, name: AppName) -> Response:
        ui.session(request)
        app = views.describe(controller, name)
        events = controller.state.events(name, limit=30)
        return ui.view(
            request,
            "app.html",
            app=app,
            revisions=views.revisions(controller, name),
            events=list(reversed(events)),
            max_instances=MAX_INSTANCES,
        )

    @api.get("/apps/{name}/instances")
    async def instances(request: Request, name: AppName) -> Response:
        """The instances table alone, which the app page polls."""
        ui.session(request)
        return page("_instances.html", app=views.describe(controller, name))

    @api.get("/apps/{name}/logs")
    async def log_events(request: Request, name: AppName) -> Response:
        """Server-sent events: the last lines, then each new one as the app writes it.

        A reconnecting browser sends the last id it saw; the tail resumes after
        it, so no line is lost or shown twice while the buffer still holds it.
        """
        ui.session(request)
        controller.state.app(name)
        buffer = controller.target.logs(name)
        last = request.headers.get("last-event-id", "")
        if last.isdigit():
            start = int(last) + 1
            kept = buffer.since(start)
        else:
            kept = buffer.recent(TAIL)
        cursor = buffer.next_seq

        async def lines() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            for line in kept:
                yield _sse(line)
            async for line in buffer.follow(cursor):
                yield _sse(line)

        return StreamingResponse(
            lines(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @api.post("/apps/{name}/scale")
    async def scale(request: Request, name: AppName) -> Response:
        session, form = await ui.action(request)
        try:
            count = int(form.get("instances", ""))
        except ValueError:
            raise UsageError("the number of instances must be a whole number") from None
        if not 0 <= count <= MAX_INSTANCES:
            raise UsageError(f"an app runs 0 to {MAX_INSTANCES} instances, not {count}")
        return await _reported(session, name, controller.scale(name, count))

    @api.post("/apps/{name}/rollback")
    async def rollback(request: Request, name: AppName) -> Response:
        session, form = await ui.action(request)
        number = form.get("revision", "")
        if not number.isdigit():
            raise UsageError("pick a revision to roll back to")
        progress: list[str] = []
        return await _reported(
            session, name, controller.rollback(name, int(number), progress.append)
        )

    @api.get("/apps/{name}/events")
    async def events_page(
        request: Request, name: AppName, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> Response:
        ui.session(request)
        controller.state.app(name)
        events = list(reversed(controller.state.events(name, limit=limit)))
        return page("_events.html", events=events)

    return api
