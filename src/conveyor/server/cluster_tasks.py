"""Task schedules on a Kubernetes target: one CronJob each, paused by ``suspend``.

A launch on a target goes through ``POST /v1/tasks/{name}/launch`` with
``target`` (the control flow runs here, each step a Job); a schedule's fire
times are the cluster's, so it becomes a CronJob of the task's one step.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import Field

from conveyor.orchestrate.task_cluster import ClusterLauncher
from conveyor.orchestrate.tasks import TaskService
from conveyor.server._common import Strict
from conveyor.server.cluster_apps import IMAGE_PATTERN, TargetName
from conveyor.tasks.dsl import parse_definition

__all__ = ["routes"]

#: A CronJob's name: a DNS label short enough for its Jobs' names.
_SCHEDULE = r"^[a-z0-9](?:[a-z0-9-]{0,50}[a-z0-9])?$"
ScheduleName = Annotated[str, Path(pattern=_SCHEDULE, description="A schedule on a target.")]
_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"


class ClusterScheduleIn(Strict):
    name: str = Field(pattern=_SCHEDULE)
    task: str = Field(max_length=100)
    cron: str = Field(max_length=200)
    timezone: str | None = Field(None, max_length=100)
    params: dict[Annotated[str, Field(pattern=_KEY)], Annotated[str, Field(max_length=10_000)]] = (
        Field(default_factory=dict)
    )
    #: The step's image (else built from its task app's files).
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)


def routes(tasks: TaskService) -> APIRouter:
    api = APIRouter(tags=["targets"])

    @api.post(
        "/v1/targets/{target_name}/task-schedules",
        status_code=201,
        summary="Schedule a one-step task as a CronJob",
    )
    async def create(target_name: TargetName, body: ClusterScheduleIn) -> dict[str, Any]:
        target = tasks.cluster(target_name)
        definition = parse_definition(tasks.records.definition(body.task))
        launcher = ClusterLauncher(
            target, tasks.apps, tasks.controller.droplets.materialise, image=body.image
        )
        cronjob = await launcher.schedule(
            body.name,
            task=body.task,
            definition=definition,
            cron=body.cron,
            time_zone=body.timezone,
            params=body.params,
        )
        return {
            "name": body.name,
            "task": body.task,
            "cron": cronjob["spec"]["schedule"],
            "image": cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
                "image"
            ],
        }

    @api.get("/v1/targets/{target_name}/task-schedules", summary="The CronJobs on a target")
    async def list_schedules(target_name: TargetName) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await asyncio.to_thread(tasks.cluster(target_name).schedules)
        return rows

    @api.post(
        "/v1/targets/{target_name}/task-schedules/{name}/pause", summary="Suspend the CronJob"
    )
    async def pause(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        await asyncio.to_thread(tasks.cluster(target_name).suspend, name, True)
        return {"name": name, "paused": True}

    @api.post(
        "/v1/targets/{target_name}/task-schedules/{name}/resume", summary="Resume the CronJob"
    )
    async def resume(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        await asyncio.to_thread(tasks.cluster(target_name).suspend, name, False)
        return {"name": name, "paused": False}

    @api.delete("/v1/targets/{target_name}/task-schedules/{name}", summary="Delete the CronJob")
    async def destroy(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        await asyncio.to_thread(tasks.cluster(target_name).unschedule, name)
        return {"name": name, "destroyed": True}

    return api
