"""Schedules run by the platform process: at each fire time, launch the task (or say why not).

The scheduler asks an injected clock for the time and for its sleeps, so a
test moves a fake clock across fire times, downtime and overlaps without
waiting. Schedules, their next fire times and their events are kept in the
registry: a platform that starts again knows which fire times it missed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

from conveyor.errors import UsageError
from conveyor.orchestrate.task_secrets import seal_properties
from conveyor.store.sealing import mask_sealed
from conveyor.store.secrets import SecretBox
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.schedules import WHEN_BUSY, Schedule, decide

__all__ = ["TaskScheduler"]

log = logging.getLogger("conveyor.orchestrate.task_schedules")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
#: Longest sleep between looks at the schedules (so a new one is seen soon enough).
_MAX_SLEEP = 30.0
#: ... and while a launch is queued behind a running execution.
_QUEUED_SLEEP = 1.0


class WallClock(Protocol):
    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Launches(Protocol):
    """What the scheduler needs of the task service."""

    records: TaskRepository

    async def launch(
        self,
        name: str,
        params: Mapping[str, str] | None,
        properties: Mapping[str, str] | None,
        *,
        target: str | None = None,
        image: str | None = None,
    ) -> dict[str, Any]: ...

    def is_running(self, execution_id: str) -> bool: ...


class TaskScheduler:
    """Schedules of one task service; :meth:`run` is the loop the platform starts."""

    def __init__(
        self, tasks: Launches, clock: WallClock, *, secrets: SecretBox | None = None
    ) -> None:
        self.tasks = tasks
        self.records = tasks.records
        self.clock = clock
        #: Seals URLs' passwords in a schedule's parameters (``app.load.url=...``) at rest.
        self.secrets = secrets

    def create(
        self,
        name: str,
        task: str,
        cron: str,
        timezone: str = "UTC",
        *,
        params: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        catch_up: bool = True,
        when_busy: str = "skip",
        target: str | None = None,
        image: str | None = None,
    ) -> dict[str, Any]:
        """A new schedule; with ``target`` its executions run there (the control flow here)."""
        if not _NAME.match(name):
            raise UsageError(
                f"{name!r} is not a valid schedule name; use letters, digits, '.', '_' and '-'"
            )
        if when_busy not in WHEN_BUSY:
            raise UsageError(
                f"when busy, a schedule can {' or '.join(WHEN_BUSY)}; got {when_busy!r}"
            )
        self.records.definition(task)
        schedule = Schedule(
            name,
            task,
            cron,
            timezone,
            self._sealed(params or {}),
            self._sealed(properties or {}),
            catch_up=catch_up,
            when_busy=when_busy,
            target=target,
            image=image,
        )
        schedule.next_fire = schedule.parsed().next_after(self.clock.wall())
        self.records.save_schedule(schedule.to_json(), new=True)
        return _shown(schedule)

    def _sealed(self, values: Mapping[str, str]) -> dict[str, str]:
        return dict(values) if self.secrets is None else seal_properties(self.secrets, values)

    def schedules(self) -> list[dict[str, Any]]:
        return [mask_sealed(doc) for doc in self.records.schedules()]

    def get(self, name: str) -> dict[str, Any]:
        return dict(mask_sealed(self.records.schedule(name)))

    def pause(self, name: str) -> dict[str, Any]:
        schedule = Schedule.from_json(self.records.schedule(name))
        schedule.paused = True
        schedule.note(self.clock.wall(), "paused")
        self.records.save_schedule(schedule.to_json())
        return _shown(schedule)

    def resume(self, name: str) -> dict[str, Any]:
        """Unpause; the next fire time counts from now (paused fire times are not caught up)."""
        schedule = Schedule.from_json(self.records.schedule(name))
        now = self.clock.wall()
        schedule.paused = False
        schedule.next_fire = schedule.parsed().next_after(now)
        schedule.note(now, "resumed")
        self.records.save_schedule(schedule.to_json())
        return _shown(schedule)

    def destroy(self, name: str) -> None:
        self.records.delete_schedule(name)

    async def tick(self) -> list[dict[str, Any]]:
        """Launch (or skip) every schedule that is due now; returns the events it added."""
        added: list[dict[str, Any]] = []
        for document in self.records.schedules():
            schedule = Schedule.from_json(document)
            now = self.clock.wall()
            running = schedule.last_execution is not None and self.tasks.is_running(
                schedule.last_execution
            )
            decision = decide(schedule, now, running)
            execution = None
            message = decision.message
            if decision.launch:
                try:
                    started = await self.tasks.launch(
                        schedule.task,
                        schedule.params,
                        schedule.properties,
                        target=schedule.target,
                        image=schedule.image,
                    )
                    execution = schedule.last_execution = str(started["id"])
                except Exception as error:  # a schedule must outlive one bad launch
                    log.warning(
                        "schedule %s could not launch %s: %s", schedule.name, schedule.task, error
                    )
                    message = f"could not launch: {error}"
            if message is not None:
                schedule.note(now, message, execution)
                added.append(schedule.events[-1] | {"schedule": schedule.name})
            changed = (decision.next_fire, decision.queued) != (
                schedule.next_fire,
                schedule.queued,
            )
            if message is not None or changed:
                schedule.next_fire, schedule.queued = decision.next_fire, decision.queued
                self.records.save_schedule(schedule.to_json())
        return added

    async def run(self) -> None:
        """Tick at every fire time until cancelled (the platform's lifetime)."""
        while True:
            try:
                await self.tick()
            except Exception:  # the loop is the platform's: log, and look again later
                log.exception("task schedules")
            now = self.clock.wall()
            active = [s for s in self.records.schedules() if not s["paused"]]
            upcoming = [s["next_fire"] for s in active if s["next_fire"] is not None]
            longest = _QUEUED_SLEEP if any(s.get("queued") for s in active) else _MAX_SLEEP
            wait = min([longest, *(at - now for at in upcoming)])
            await self.clock.sleep(max(0.05, wait))


def _shown(schedule: Schedule) -> dict[str, Any]:
    """A schedule as answered: sealed secrets in its parameters masked."""
    return dict(mask_sealed(schedule.to_json()))
