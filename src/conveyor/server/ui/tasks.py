"""Tasks: definitions drawn as graphs, executions with each step's state, schedules.

Launch, stop and restart an execution, pause and resume a schedule: each a
POST carrying the session's CSRF token, through the same task service and
scheduler as the control API (an execution launched here stops from the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError, UsageError
from conveyor.server.ui.context import Ui, back
from conveyor.server.ui.session import Session
from conveyor.server.ui.taskgraph import task_layout

__all__ = ["parse_launch_params", "routes"]

TaskName = Annotated[str, Path(min_length=1, max_length=100)]
ScheduleName = Annotated[str, Path(min_length=1, max_length=100)]
ExecutionId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
_RECENT = 30


def parse_launch_params(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines ignored) -> dict; UsageError naming a bad line."""
    params: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UsageError(
                f"parameter line {number} ({line.strip()[:60]!r}) is not key=value with a key "
                "of letters, digits, _ . -"
            )
        params[key] = value.strip()
    return params


async def _reported(
    session: Session, work: Callable[[], Awaitable[dict[str, Any]]], done: str, where: str
) -> tuple[dict[str, Any] | None, Response]:
    """Do ``work``; say on the next page how it went; show ``where`` again."""
    try:
        result = await work()
    except ConveyorError as exc:
        session.flash.append(("error", exc.message))
        return None, back(where)
    session.flash.append(("ok", done))
    return result, back(where)


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    steps = []
    for step in doc["steps"]:
        started, ended = step.get("started_at"), step.get("ended_at")
        duration = None if started is None or ended is None else ended - started
        steps.append({**step, "duration": duration})
    return steps


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    tasks, schedules = ui.tasks, ui.schedules

    @api.get("/tasks")
    async def tasks_page(request: Request) -> Response:
        ui.session(request)
        return ui.view(
            request,
            "tasks.html",
            tasks=await run_in_threadpool(tasks.list_tasks),
            executions=(await run_in_threadpool(tasks.executions))[:_RECENT],
            schedules=await run_in_threadpool(schedules.schedules),
        )

    @api.get("/tasks/{name}")
    async def task_page(request: Request, name: TaskName) -> Response:
        ui.session(request)
        info = await run_in_threadpool(tasks.info, name)
        boxes, edges, width, height = task_layout(info["graph"])
        return ui.view(
            request,
            "task.html",
            task=info,
            boxes=boxes,
            edges=edges,
            width=width,
            height=height,
            schedules=[
                s for s in await run_in_threadpool(schedules.schedules) if s["task"] == name
            ],
        )

    @api.post("/tasks/{name}/launch")
    async def launch(request: Request, name: TaskName) -> Response:
        session, form = await ui.action(request)
        try:
            params = parse_launch_params(form.get("params", ""))
        except UsageError as exc:
            session.flash.append(("error", exc.message))
            return back(f"/ui/tasks/{name}")
        started, answer = await _reported(
            session,
            lambda: tasks.launch(name, params, {}, no_cache=bool(form.get("no_cache"))),
            f"Launched {name}",
            f"/ui/tasks/{name}",
        )
        return back(f"/ui/tasks/executions/{started['id']}") if started else answer

    @api.get("/tasks/executions/{execution}")
    async def execution_page(request: Request, execution: ExecutionId) -> Response:
        ui.session(request)
        doc = await run_in_threadpool(tasks.status, execution)
        info = await run_in_threadpool(tasks.validate, doc["task"], doc["definition"])
        states = {s["name"]: s["state"] for s in doc["steps"]}
        boxes, edges, width, height = task_layout(info["graph"], states)
        return ui.view(
            request,
            "task_execution.html",
            execution=doc,
            steps=_steps(doc),
            boxes=boxes,
            edges=edges,
            width=width,
            height=height,
        )

    @api.post("/tasks/executions/{execution}/stop")
    async def stop(request: Request, execution: ExecutionId) -> Response:
        session, _form = await ui.action(request)
        where = f"/ui/tasks/executions/{execution}"
        return (await _reported(session, lambda: tasks.stop(execution), "Stopped", where))[1]

    @api.post("/tasks/executions/{execution}/restart")
    async def restart(request: Request, execution: ExecutionId) -> Response:
        session, _form = await ui.action(request)
        where = f"/ui/tasks/executions/{execution}"
        done = "Restarted: the failed and unrun steps run again"
        return (await _reported(session, lambda: tasks.restart(execution, None), done, where))[1]

    @api.post("/tasks/schedules/{name}/{action}")
    async def schedule_action(
        request: Request,
        name: ScheduleName,
        action: Annotated[str, Path(pattern="^(pause|resume)$")],
    ) -> Response:
        session, form = await ui.action(request)
        change = schedules.pause if action == "pause" else schedules.resume

        async def work() -> dict[str, Any]:
            return await run_in_threadpool(change, name)

        asked = form.get("back", "")
        where = asked if asked.startswith("/ui/tasks") else "/ui/tasks"
        verb = "Paused" if action == "pause" else "Resumed"
        return (await _reported(session, work, f"{verb} schedule {name}", where))[1]

    return api
