"""Schedules: launch a task at the fire times of a cron expression, and say what happened.

The decision is a pure function of the schedule, the time and whether the
task's previous scheduled execution still runs, so tests drive it with any
clock. At a fire time the schedule launches, unless it is paused or its
previous execution is still running: then it skips and records why, or, with
``when_busy="queue"``, it queues that launch (one at most: a further busy fire
time is skipped) and makes it as soon as the previous execution ends. After
the platform was down, the fire times it missed give one catch-up launch at
most (none if ``catch_up`` is off), never a burst. Every launch and skip is an
event on the schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.tasks.cron import Cron

__all__ = ["WHEN_BUSY", "Decision", "Schedule", "decide"]

#: What a fire time does while the previous execution still runs.
WHEN_BUSY = ("skip", "queue")

#: A fire time this late counts as missed (the platform was down), not merely delayed.
LATE = 60.0
#: Events kept per schedule.
KEEP_EVENTS = 50


@dataclass
class Schedule:
    name: str
    task: str
    cron: str
    timezone: str = "UTC"
    params: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    catch_up: bool = True
    next_fire: float | None = None
    last_execution: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    #: "skip" or "queue" (see WHEN_BUSY).
    when_busy: str = "skip"
    #: The busy fire time queued to launch when the previous execution ends.
    queued: float | None = None
    #: The Kubernetes target its executions run on (each step a Job); None: this platform.
    target: str | None = None
    #: On a target: the steps' image (None: built from each task app's files).
    image: str | None = None

    def parsed(self) -> Cron:
        return Cron.parse(self.cron, self.timezone)

    def note(self, at: float, message: str, execution: str | None = None) -> None:
        self.events.append({"at": at, "message": message, "execution": execution})
        del self.events[:-KEEP_EVENTS]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "cron": self.cron,
            "timezone": self.timezone,
            "params": dict(self.params),
            "properties": dict(self.properties),
            "paused": self.paused,
            "catch_up": self.catch_up,
            "next_fire": self.next_fire,
            "last_execution": self.last_execution,
            "events": list(self.events),
            "when_busy": self.when_busy,
            "queued": self.queued,
            "target": self.target,
            "image": self.image,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    """What to do now: launch or not, why, the next fire time and the queued one."""

    launch: bool
    message: str | None
    next_fire: float | None
    #: The fire time waiting for the previous execution to end (None: nothing queued).
    queued: float | None = None


def _missed(cron: Cron, first: float, now: float) -> int:
    """How many fire times from ``first`` up to ``now`` (at most 1000 are counted)."""
    count, at = 0, first
    while at <= now and count < 1000:
        count += 1
        at = cron.next_after(at)
    return count


def decide(schedule: Schedule, now: float, previous_running: bool) -> Decision:
    """What ``schedule`` does at ``now`` (epoch seconds); see the module's docstring."""
    cron = schedule.parsed()
    queued = schedule.queued
    if schedule.next_fire is None:
        return Decision(False, None, cron.next_after(now), queued)
    if schedule.paused:
        return Decision(False, None, schedule.next_fire, queued)
    if queued is not None and not previous_running:
        # A fire time due as well is left for the next look, which finds this one running.
        message = f"launched the fire time queued while {schedule.last_execution} ran"
        return Decision(True, message, schedule.next_fire, None)
    if now < schedule.next_fire:
        return Decision(False, None, schedule.next_fire, queued)
    following = cron.next_after(now)
    late = now - schedule.next_fire > LATE
    missed = _missed(cron, schedule.next_fire, now) if late else 1
    if late and not schedule.catch_up:
        return Decision(
            False,
            f"missed {missed} fire time(s) while the platform was down; catch-up is off",
            following,
            queued,
        )
    if previous_running:
        busy = f"the previous execution {schedule.last_execution} is still running"
        if schedule.when_busy != "queue":
            return Decision(False, f"skipped: {busy}", following)
        if queued is not None:
            return Decision(
                False, f"skipped: {busy} and one launch is queued already", following, queued
            )
        return Decision(False, f"queued: {busy}; launches when it ends", following, now)
    if late:
        return Decision(
            True, f"launched one catch-up for {missed} fire time(s) missed while down", following
        )
    return Decision(True, "launched", following)
