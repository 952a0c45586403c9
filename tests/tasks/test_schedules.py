"""Cron expressions; schedules on a fake clock: fire, skip on overlap, pause, catch-up."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import NotFoundError, UsageError
from conveyor.orchestrate.task_schedules import TaskScheduler
from conveyor.store.registry import Registry
from conveyor.store.secrets import SecretBox
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.cron import Cron, CronError


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC).timestamp()


def _shown(at: float, zone: str = "UTC") -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %a")


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("0 2 * * *", "Europe/London", _utc(2026, 12, 5, 12), "2026-12-06 02:00 Sun"),
        ("0 2 * * *", "Europe/London", _utc(2026, 7, 5, 12), "2026-07-06 02:00 Mon"),
        ("*/15 * * * *", "UTC", _utc(2026, 12, 5, 12, 1), "2026-12-05 12:15 Sat"),
        ("0 9 * * mon-fri", "UTC", _utc(2026, 12, 5, 12), "2026-12-07 09:00 Mon"),
        ("0 0 1,15 * *", "UTC", _utc(2026, 12, 5), "2026-12-15 00:00 Tue"),
        ("0 0 13 * 5", "UTC", _utc(2026, 12, 5), "2026-12-11 00:00 Fri"),  # day OR weekday
        ("0 0 * * 7", "UTC", _utc(2026, 12, 5), "2026-12-06 00:00 Sun"),
        ("0 0 29 feb *", "UTC", _utc(2026, 12, 5), "2028-02-29 00:00 Tue"),
        ("30 1 * * *", "America/New_York", _utc(2026, 3, 8, 5), "2026-03-08 01:30 Sun"),
        # 02:30 does not exist on the day clocks go forward: it fires an hour later, once.
        ("30 2 * * *", "America/New_York", _utc(2026, 3, 8, 5), "2026-03-08 03:30 Sun"),
    ],
)
def test_next_fire_times(expression: str, zone: str, after: float, expected: str) -> None:
    assert _shown(Cron.parse(expression, zone).next_after(after), zone) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("0 2 * *", "UTC", "has 4 fields; expected 5"),
        ("61 * * * *", "UTC", "the minute field has 61; expected 0-59"),
        ("0 25 * * *", "UTC", "the hour field has 25"),
        ("0 0 * foo *", "UTC", "the month field has 'foo'; expected a number 1-12 or a name"),
        ("*/0 * * * *", "UTC", "step '0'"),
        ("5-1 * * * *", "UTC", "smaller number first"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("0 0 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_cron_expression_that_does_not_parse_says_which_field(
    expression: str, zone: str, message: str
) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expression, zone)


class FakeWall:
    """A wall clock that moves only when told; sleeps return at once."""

    def __init__(self, now: float) -> None:
        self.now = now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class FakeTasks:
    """The task service as the scheduler sees it: launches recorded, running as told."""

    def __init__(self, records: TaskRepository) -> None:
        self.records = records
        self.launched: list[str] = []
        self.running: set[str] = set()

    async def launch(
        self,
        name: str,
        params: Mapping[str, str] | None,
        properties: Mapping[str, str] | None,
        *,
        target: str | None = None,
        image: str | None = None,
    ) -> dict[str, Any]:
        execution = f"e{len(self.launched) + 1}"
        self.launched.append(execution)
        self.running.add(execution)
        return {"id": execution}

    def is_running(self, execution_id: str) -> bool:
        return execution_id in self.running


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TaskScheduler, FakeTasks, FakeWall]]:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        records = TaskRepository(registry)
        records.create("nightly", "timestamp")
        tasks = FakeTasks(records)
        clock = FakeWall(_utc(2026, 12, 5, 12))
        yield TaskScheduler(tasks, clock), tasks, clock


def _messages(scheduler: TaskScheduler, name: str = "nightly-2am") -> list[str]:
    return [e["message"] for e in scheduler.get(name)["events"]]


def test_a_schedule_launches_at_its_fire_time_and_skips_while_the_last_one_runs(
    setup: tuple[TaskScheduler, FakeTasks, FakeWall],
) -> None:
    scheduler, tasks, clock = setup
    created = scheduler.create("nightly-2am", "nightly", "0 2 * * *", "Europe/London")
    assert _shown(created["next_fire"]) == "2026-12-06 02:00 Sun"
    asyncio.run(scheduler.tick())
    assert tasks.launched == []
    clock.now = _utc(2026, 12, 6, 2, 0, 5)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    clock.now = _utc(2026, 12, 7, 2, 0, 5)  # e1 still runs a day later
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    assert _messages(scheduler) == [
        "launched",
        "skipped: the previous execution e1 is still running",
    ]
    tasks.running.clear()
    clock.now = _utc(2026, 12, 8, 2, 0, 5)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1", "e2"]
    assert scheduler.get("nightly-2am")["events"][-1]["execution"] == "e2"


def test_a_queueing_schedule_launches_a_busy_fire_time_when_the_last_one_ends(
    setup: tuple[TaskScheduler, FakeTasks, FakeWall],
) -> None:
    scheduler, tasks, clock = setup
    scheduler.create("hourly", "nightly", "0 * * * *", "UTC", when_busy="queue")
    clock.now = _utc(2026, 12, 5, 13, 0, 5)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    clock.now = _utc(2026, 12, 5, 14, 0, 5)  # e1 still runs: this fire time waits
    asyncio.run(scheduler.tick())
    clock.now = _utc(2026, 12, 5, 15, 0, 5)  # the queue holds one: this one is skipped
    asyncio.run(scheduler.tick())
    clock.now = _utc(2026, 12, 5, 15, 10)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    assert scheduler.get("hourly")["queued"] == _utc(2026, 12, 5, 14, 0, 5)
    tasks.running.clear()  # e1 ends between two fire times: the queued launch goes at once
    clock.now = _utc(2026, 12, 5, 15, 20)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1", "e2"]
    assert scheduler.get("hourly")["queued"] is None
    assert _messages(scheduler, "hourly") == [
        "launched",
        "queued: the previous execution e1 is still running; launches when it ends",
        "skipped: the previous execution e1 is still running and one launch is queued already",
        "launched the fire time queued while e1 ran",
    ]
    tasks.running.clear()
    clock.now = _utc(2026, 12, 5, 16, 0, 5)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1", "e2", "e3"]
    assert scheduler.get("hourly")["when_busy"] == "queue"


def test_after_downtime_one_catch_up_at_most(
    setup: tuple[TaskScheduler, FakeTasks, FakeWall],
) -> None:
    scheduler, tasks, clock = setup
    scheduler.create("nightly-2am", "nightly", "0 2 * * *", "UTC")
    clock.now = _utc(2026, 12, 10, 12)  # down for five fire times (6th to 10th, 02:00)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    assert _messages(scheduler) == ["launched one catch-up for 5 fire time(s) missed while down"]
    assert _shown(scheduler.get("nightly-2am")["next_fire"]) == "2026-12-11 02:00 Fri"
    scheduler.create("no-catch-up", "nightly", "0 3 * * *", "UTC", catch_up=False)
    clock.now = _utc(2026, 12, 14, 12)
    tasks.running.clear()
    asyncio.run(scheduler.tick())
    assert _messages(scheduler, "no-catch-up") == [
        "missed 4 fire time(s) while the platform was down; catch-up is off"
    ]


def test_pause_and_resume(setup: tuple[TaskScheduler, FakeTasks, FakeWall]) -> None:
    scheduler, tasks, clock = setup
    scheduler.create("nightly-2am", "nightly", "0 2 * * *", "UTC")
    scheduler.pause("nightly-2am")
    clock.now = _utc(2026, 12, 7, 12)
    asyncio.run(scheduler.tick())
    assert tasks.launched == []
    scheduler.resume("nightly-2am")
    asyncio.run(scheduler.tick())
    assert tasks.launched == []  # what was missed while paused is not caught up
    clock.now = _utc(2026, 12, 8, 2, 0, 1)
    asyncio.run(scheduler.tick())
    assert tasks.launched == ["e1"]
    assert _messages(scheduler) == ["paused", "resumed", "launched"]


def test_bad_schedules_are_refused(setup: tuple[TaskScheduler, FakeTasks, FakeWall]) -> None:
    scheduler, _, _ = setup
    with pytest.raises(CronError, match="the hour field"):
        scheduler.create("s", "nightly", "0 24 * * *")
    with pytest.raises(NotFoundError, match="no task named 'nope'"):
        scheduler.create("s", "nope", "0 2 * * *")
    scheduler.create("s", "nightly", "0 2 * * *")
    with pytest.raises(UsageError, match="exists already"):
        scheduler.create("s", "nightly", "0 2 * * *")
    scheduler.destroy("s")
    with pytest.raises(NotFoundError):
        scheduler.get("s")
    with pytest.raises(UsageError, match="skip or queue; got 'wait'"):
        scheduler.create("s", "nightly", "0 2 * * *", when_busy="wait")


def test_a_url_password_in_a_schedules_properties_is_kept_sealed_and_shown_masked(
    tmp_path: Path,
) -> None:
    url = "postgresql+psycopg://postgres:pw-sched-4c1a@127.0.0.1/test"
    box = SecretBox(tmp_path / "secrets.key")
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        records = TaskRepository(registry)
        records.create("nightly", "timestamp")
        scheduler = TaskScheduler(FakeTasks(records), FakeWall(0.0), secrets=box)
        shown = scheduler.create("n", "nightly", "0 2 * * *", properties={"app.sql.url": url})
        assert shown["properties"] == {"app.sql.url": url.replace("pw-sched-4c1a", "***")}
        assert scheduler.get("n")["properties"] == shown["properties"]
        stored = records.schedule("n")["properties"]["app.sql.url"]
        assert "pw-sched-4c1a" not in stored
        assert box.unseal_text(stored) == url
