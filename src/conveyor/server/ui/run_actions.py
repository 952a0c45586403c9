"""What a user changes on a run from its page: tags, deletion and restoring (each a POST + CSRF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.server.ui.context import Ui, back
from conveyor.server.ui.session import Session

__all__ = ["routes"]

RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]


async def _reported(session: Session, run_id: str, work: Callable[[], str], done: str) -> Response:
    """Do ``work`` in a thread, say on the run's page how it went, and show the page again."""
    try:
        full = await run_in_threadpool(work)
    except ConveyorError as exc:
        session.flash.append(("error", exc.message))
        full = run_id
    else:
        session.flash.append(("ok", done))
    return back(f"/ui/runs/{full}")


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    registry = ui.controller.state.registry

    @api.post("/runs/{run_id}/tags")
    async def tag(request: Request, run_id: RunId) -> Response:
        session, form = await ui.action(request)
        key, value = form.get("key", "").strip(), form.get("value", "")
        work = lambda: registry.set_tags(run_id, {key: value})  # noqa: E731
        return await _reported(session, run_id, work, f"Tagged {key}={value}")

    @api.post("/runs/{run_id}/untag")
    async def untag(request: Request, run_id: RunId) -> Response:
        session, form = await ui.action(request)
        key = form.get("key", "")
        return await _reported(
            session, run_id, lambda: registry.remove_tags(run_id, [key]), f"Removed tag {key}"
        )

    @api.post("/runs/{run_id}/delete")
    async def delete(request: Request, run_id: RunId) -> Response:
        session, _form = await ui.action(request)
        return await _reported(
            session,
            run_id,
            lambda: registry.delete_run(run_id),
            "Deleted: hidden from the runs list until restored; the next "
            "`conveyor artifacts gc` removes it for good",
        )

    @api.post("/runs/{run_id}/restore")
    async def restore(request: Request, run_id: RunId) -> Response:
        session, _form = await ui.action(request)
        return await _reported(
            session, run_id, lambda: registry.delete_run(run_id, restore=True), "Restored"
        )

    return api
