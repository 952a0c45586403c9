"""Task schedules on a Kubernetes target: a one-step task's is a CronJob, a composed task's
is run by the platform's scheduler.

A launch on a target goes through ``POST /v1/tasks/{name}/launch`` with
``target`` (the control flow runs here, each step a Job). A one-step task's
schedule becomes a CronJob (the cluster fires it, ``suspend`` pauses it); a
composed task's control flow must run in the Conveyor server, so its
schedule is the platform's own, recorded with the target: at each fire time
the server launches the task there, as ``task launch --target`` does. The
routes under ``/v1/targets/{target}/task-schedules`` list and manage both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field

from conveyor.errors import NotFoundError, UsageError
from conveyor.orchestrate.task_cluster import check_on_cluster
from conveyor.orchestrate.task_schedules import TaskScheduler
from conveyor.orchestrate.tasks import TaskService
from conveyor.server._common import Strict
from conveyor.server.cluster_apps import IMAGE_PATTERN, TargetName
from conveyor.tasks.catalogue import check_apps
from conveyor.tasks.dsl import parse_definition

__all__ = ["routes"]

#: A CronJob's name: a DNS label short enough for its Jobs' names.
_SCHEDULE = r"^[a-z0-9](?:[a-z0-9-]{0,50}[a-z0-9])?$"
ScheduleName = Annotated[str, Path(pattern=_SCHEDULE, description="A schedule on a target.")]
_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"
_Params = dict[Annotated[str, Field(pattern=_KEY)], Annotated[str, Field(max_length=10_000)]]


class ClusterScheduleIn(Strict):
    name: str = Field(pattern=_SCHEDULE)
    task: str = Field(max_length=100)
    cron: str = Field(max_length=200)
    timezone: str | None = Field(None, max_length=100)
    params: _Params = Field(default_factory=dict)
    #: The steps' image (else built from each task app's files).
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)
    #: For a composed task's schedule (the platform's); a CronJob has none of these.
    properties: _Params = Field(default_factory=dict)
    catch_up: bool = True
    when_busy: Literal["skip", "queue"] = "skip"


def _fired(schedule: dict[str, Any]) -> str | None:
    """When a platform-run schedule last launched its task, as a CronJob's status says it."""
    launched = [e["at"] for e in schedule["events"] if e.get("execution")]
    if not launched:
        return None
    return dt.datetime.fromtimestamp(launched[-1], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def routes(tasks: TaskService, schedules: TaskScheduler) -> APIRouter:
    api = APIRouter(tags=["targets"])

    def held(target_name: str, name: str) -> bool:
        """Whether ``name`` is a composed task's schedule the platform runs for the target."""
        try:
            return schedules.get(name).get("target") == target_name
        except NotFoundError:
            return False

    async def composed(target_name: str, body: ClusterScheduleIn) -> dict[str, Any]:
        definition = parse_definition(tasks.records.definition(body.task))
        check_apps(definition, tasks.apps())
        check_on_cluster(definition, tasks.apps(), body.image)
        target = tasks.cluster(target_name)
        if await asyncio.to_thread(target.cluster.get, "CronJob", body.name) is not None:
            raise UsageError(
                f"a schedule named {body.name!r} exists already on {target_name} (a CronJob)",
                hint=f"Destroy it first: conveyor task schedule destroy {body.name} "
                f"--target {target_name}",
            )
        made = schedules.create(
            body.name,
            body.task,
            body.cron,
            body.timezone or "UTC",
            params=body.params,
            properties=body.properties,
            catch_up=body.catch_up,
            when_busy=body.when_busy,
            target=target_name,
            image=body.image,
        )
        return {
            "name": body.name,
            "task": body.task,
            "cron": made["cron"],
            "image": body.image,
            "runs_in": "server",
            "next_fire": made["next_fire"],
        }

    @api.post(
        "/v1/targets/{target_name}/task-schedules",
        status_code=201,
        summary="Schedule a task on a target: a CronJob, or the platform's for a composed task",
    )
    async def create(target_name: TargetName, body: ClusterScheduleIn) -> dict[str, Any]:
        definition = parse_definition(tasks.records.definition(body.task))
        if len(list(definition.apps())) > 1:
            return await composed(target_name, body)
        if body.properties or body.when_busy != "skip" or not body.catch_up:
            raise UsageError(
                "--properties, --when-busy queue and --no-catch-up are for schedules this "
                "platform runs; a CronJob skips a busy turn (give step options in --arguments)"
            )
        if held(target_name, body.name):
            raise UsageError(
                f"a schedule named {body.name!r} exists already on {target_name}",
                hint=f"Destroy it first: conveyor task schedule destroy {body.name} "
                f"--target {target_name}",
            )
        launcher = tasks.cluster_launcher(target_name, body.image)
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
            "runs_in": "cluster",
        }

    @api.get(
        "/v1/targets/{target_name}/task-schedules",
        summary="The schedules of a target: its CronJobs, and composed tasks' the platform runs",
    )
    async def list_schedules(target_name: TargetName) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await asyncio.to_thread(tasks.cluster(target_name).schedules)
        for row in rows:
            row["runs_in"] = "cluster"
        for schedule in schedules.schedules():
            if schedule.get("target") == target_name:
                rows.append(
                    {
                        "name": schedule["name"],
                        "task": schedule["task"],
                        "cron": schedule["cron"],
                        "time_zone": schedule["timezone"],
                        "paused": schedule["paused"],
                        "last_fired": _fired(schedule),
                        "runs_in": "server",
                        "next_fire": schedule["next_fire"],
                    }
                )
        return sorted(rows, key=lambda row: str(row["name"]))

    @api.post("/v1/targets/{target_name}/task-schedules/{name}/pause", summary="Pause it")
    async def pause(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        if held(target_name, name):
            schedules.pause(name)
        else:
            await asyncio.to_thread(tasks.cluster(target_name).suspend, name, True)
        return {"name": name, "paused": True}

    @api.post("/v1/targets/{target_name}/task-schedules/{name}/resume", summary="Resume it")
    async def resume(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        if held(target_name, name):
            return {"name": name, "paused": False, "next_fire": schedules.resume(name)["next_fire"]}
        await asyncio.to_thread(tasks.cluster(target_name).suspend, name, False)
        return {"name": name, "paused": False}

    @api.delete("/v1/targets/{target_name}/task-schedules/{name}", summary="Delete it")
    async def destroy(target_name: TargetName, name: ScheduleName) -> dict[str, Any]:
        if held(target_name, name):
            schedules.destroy(name)
        else:
            await asyncio.to_thread(tasks.cluster(target_name).unschedule, name)
        return {"name": name, "destroyed": True}

    return api
