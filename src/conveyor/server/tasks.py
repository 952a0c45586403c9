"""The control API's composed-task routes: task apps, task definitions and their executions.

A router over one :class:`~conveyor.orchestrate.tasks.TaskService`; errors
reach the client through the app's ConveyorError handler (4xx with a reason).
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import Field

from conveyor.orchestrate.task_schedules import TaskScheduler
from conveyor.orchestrate.tasks import ClusterTargets, TaskService
from conveyor.platform import Controller, SystemClock
from conveyor.server._common import APP_NAME, FileIn, Strict
from conveyor.server.cluster_apps import IMAGE_PATTERN
from conveyor.tasks.catalogue import TaskApp

__all__ = ["task_routes", "task_services"]

_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"

#: The schedulers' loops (kept referenced while they run).
_RUNNING: set[asyncio.Task[None]] = set()

ScheduleName = Annotated[str, Path(max_length=100, description="The schedule's name.")]
TaskName = Annotated[str, Path(max_length=100, description="The task's name.")]
ExecutionId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{1,32}$", description="An execution id, or its start.")
]
Params = dict[Annotated[str, Field(pattern=_KEY)], Annotated[str, Field(max_length=10_000)]]


class TaskAppIn(Strict):
    name: str = Field(max_length=42)
    command: str | None = Field(None, max_length=10_000)
    uri: str | None = Field(None, max_length=300)
    files: dict[Annotated[str, Field(max_length=1000)], FileIn] | None = None
    options: dict[Annotated[str, Field(pattern=_KEY)], str] | None = None
    cache: bool = True
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600)


class TaskIn(Strict):
    name: str = Field(max_length=100)
    definition: str = Field(max_length=64 * 1024)


class LaunchIn(Strict):
    params: Params = Field(default_factory=dict)
    properties: Params = Field(default_factory=dict)
    no_cache: bool = False
    #: A Kubernetes target: each step runs there as a Job.
    target: str | None = Field(None, pattern=APP_NAME)
    #: With ``target``: the steps' image (else built from each task app's files).
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)


class ScheduleIn(Strict):
    name: str = Field(max_length=100)
    task: str = Field(max_length=100)
    cron: str = Field(max_length=200)
    timezone: str = Field("UTC", max_length=100)
    params: Params = Field(default_factory=dict)
    properties: Params = Field(default_factory=dict)
    catch_up: bool = True
    when_busy: Literal["skip", "queue"] = "skip"


class RestartIn(Strict):
    #: None keeps the original launch's parameters.
    params: Params | None = None


def task_services(
    controller: Controller,
    runs_dir: FilePath | None = None,
    clusters: ClusterTargets | None = None,
) -> tuple[TaskService, TaskScheduler]:
    """The task service (after marking what a killed platform left running) and its scheduler.

    The control API and the dashboard share them: an execution launched from
    one is stopped from the other.
    """
    tasks = TaskService(controller, runs_dir=runs_dir, clusters=clusters)
    tasks.recover()
    schedules = TaskScheduler(tasks, SystemClock(), secrets=tasks.secrets)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # an app built outside the platform's loop (a test): no schedule runs
    if loop is not None:
        scheduling = loop.create_task(schedules.run())
        _RUNNING.add(scheduling)
        scheduling.add_done_callback(_RUNNING.discard)
    return tasks, schedules


def task_routes(tasks: TaskService, schedules: TaskScheduler) -> APIRouter:
    """The routes over the task service and scheduler of :func:`task_services`."""
    router = APIRouter()

    @router.get("/v1/task-apps", summary="The apps steps can run: built-in and registered")
    async def task_apps() -> list[dict[str, Any]]:
        return tasks.catalogue()

    @router.post("/v1/task-apps", status_code=201, summary="Register a task app (staged)")
    async def register_task_app(body: TaskAppIn) -> dict[str, Any]:
        files = None if body.files is None else {k: v.model_dump() for k, v in body.files.items()}
        sort = "python" if body.uri is not None else "command"
        app = TaskApp(
            body.name,
            sort,
            command=body.command,
            uri=body.uri,
            options=body.options,
            cache=body.cache,
            timeout=body.timeout,
            files=files,
        )
        return await tasks.register_app(app)

    @router.delete("/v1/task-apps/{name}", summary="Forget a registered task app")
    async def unregister_task_app(name: Annotated[str, Path(max_length=42)]) -> dict[str, str]:
        tasks.unregister_app(name)
        return {"name": name}

    @router.get("/v1/tasks", summary="Every task: definition, last execution's state")
    async def list_tasks() -> list[dict[str, Any]]:
        return tasks.list_tasks()

    @router.post("/v1/tasks/validate", summary="Parse and check a definition: steps and graph")
    async def validate_task(body: TaskIn) -> dict[str, Any]:
        return tasks.validate(body.name, body.definition)

    @router.post("/v1/tasks", status_code=201, summary="Create a task from a definition")
    async def create_task(body: TaskIn) -> dict[str, Any]:
        return tasks.create(body.name, body.definition)

    @router.get("/v1/tasks/{name}", summary="A task: steps, graph and recent executions")
    async def task_info(name: TaskName) -> dict[str, Any]:
        return tasks.info(name)

    @router.delete("/v1/tasks/{name}", summary="Stop its executions and forget the task")
    async def destroy_task(name: TaskName) -> dict[str, Any]:
        return await tasks.destroy(name)

    @router.post("/v1/tasks/{name}/launch", status_code=201, summary="Start an execution")
    async def launch_task(name: TaskName, body: LaunchIn) -> dict[str, Any]:
        return await tasks.launch(
            name,
            body.params,
            body.properties,
            no_cache=body.no_cache,
            target=body.target,
            image=body.image,
        )

    @router.get("/v1/task-executions", summary="Executions, newest first")
    async def list_executions(
        task: Annotated[str | None, Query(max_length=100)] = None,
    ) -> list[dict[str, Any]]:
        return tasks.executions(task)

    @router.get("/v1/task-executions/{execution}", summary="An execution and each step's state")
    async def execution_status(execution: ExecutionId, wait: bool = False) -> dict[str, Any]:
        return await tasks.wait(execution) if wait else tasks.status(execution)

    @router.get("/v1/task-executions/{execution}/log", summary="Each step's recorded output")
    async def execution_log(
        execution: ExecutionId, step: Annotated[str | None, Query(max_length=100)] = None
    ) -> list[dict[str, Any]]:
        return tasks.log(execution, step)

    @router.post("/v1/task-executions/{execution}/stop", summary="Stop the running steps")
    async def stop_execution(execution: ExecutionId) -> dict[str, Any]:
        return await tasks.stop(execution)

    @router.post("/v1/task-executions/{execution}/restart", summary="Rerun failed/unrun steps")
    async def restart_execution(execution: ExecutionId, body: RestartIn) -> dict[str, Any]:
        return await tasks.restart(execution, body.params)

    @router.get("/v1/task-schedules", summary="Every schedule: cron, next fire time, events")
    async def list_schedules() -> list[dict[str, Any]]:
        return schedules.schedules()

    @router.post("/v1/task-schedules", status_code=201, summary="Launch a task on a cron")
    async def create_schedule(body: ScheduleIn) -> dict[str, Any]:
        return schedules.create(
            body.name,
            body.task,
            body.cron,
            body.timezone,
            params=body.params,
            properties=body.properties,
            catch_up=body.catch_up,
            when_busy=body.when_busy,
        )

    @router.get("/v1/task-schedules/{name}", summary="A schedule and its recent events")
    async def get_schedule(name: ScheduleName) -> dict[str, Any]:
        return schedules.get(name)

    @router.post("/v1/task-schedules/{name}/pause", summary="Stop launching until resumed")
    async def pause_schedule(name: ScheduleName) -> dict[str, Any]:
        return schedules.pause(name)

    @router.post("/v1/task-schedules/{name}/resume", summary="Launch again from the next time")
    async def resume_schedule(name: ScheduleName) -> dict[str, Any]:
        return schedules.resume(name)

    @router.delete("/v1/task-schedules/{name}", summary="Forget a schedule")
    async def destroy_schedule(name: ScheduleName) -> dict[str, str]:
        schedules.destroy(name)
        return {"name": name}

    return router
