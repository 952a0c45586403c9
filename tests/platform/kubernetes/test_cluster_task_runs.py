"""Steps on a target recorded as runs and served from the cache; composed schedules on a target.

The test plays the Job controller on kmock (:mod:`.job_controller`); the
composed schedule fires on an injected clock, in process, against the fake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.errors import NotFoundError
from conveyor.orchestrate.task_schedules import TaskScheduler
from conveyor.orchestrate.tasks import TaskService
from conveyor.platform import Controller, KubernetesTarget
from conveyor.repro.openlineage import run_uuid
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry
from conveyor.tasks.catalogue import TaskApp
from tests.openlineage_schema import validate_event
from tests.platform.control import Platform
from tests.tasks.test_schedules import FakeWall
from tests.ui.dashboard import logged_in

from .fake_api import FakeApi, fake_api
from .job_controller import IMAGE, end_job, register

pytestmark = pytest.mark.slow

_ROW = re.compile(r"\s+(\S+)\s+(\w+)\s+(exit \d+)?\s+run ([0-9a-f]{12}|-)( cached)?")


def _launch(
    platform: Platform, api: FakeApi, task: str, ends: list[tuple[str, int, str]], *args: str
) -> subprocess.CompletedProcess[str]:
    """``task launch TASK --target prod --wait``, the test ending each Job in ``ends``."""

    def controller() -> None:
        for prefix, code, line in ends:
            end_job(api, prefix, code, line)

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        return platform.cli(
            "task", "launch", task, "--target", "prod", "--image", IMAGE, *args, "--wait",
            check=False,
        )  # fmt: skip
    finally:
        playing.join(60)


def _rows(printed: str) -> dict[str, tuple[str, str | None, str, bool]]:
    """Each step's (state, exit, run, cached) as ``task launch --wait`` prints them."""
    found = {}
    for line in printed.splitlines():
        match = _ROW.match(line)
        if match:
            name, state, code, run, cached = match.groups()
            found[name] = (state, code, run, bool(cached))
    return found


def _run(platform: Platform, run: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(platform.cli("runs", "show", run, "--json").stdout)
    return shown


def _jobs(api: FakeApi, prefix: str) -> list[str]:
    return sorted(name for name in api.objects("Job") if name.startswith(prefix))


def test_steps_on_a_target_are_recorded_as_runs_and_a_relaunch_is_served_from_the_cache(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "extract", "python step.py")
    register(platform, "load", "python step.py --load")
    platform.cli("task", "create", "warehouse", "--definition", "extract && load")
    ends = [("warehouse-extract-", 0, "extracted 3 rows"), ("warehouse-load-", 0, "loaded")]
    first = _launch(platform, api, "warehouse", ends, "--arguments", "--day=2026-12-05")
    assert first.returncode == 0, first.stdout + first.stderr
    rows = _rows(first.stdout)
    assert {name: row[:2] for name, row in rows.items()} == {
        "extract": ("COMPLETED", "exit 0"),
        "load": ("COMPLETED", "exit 0"),
    }, first.stdout
    assert all(row[2] != "-" and not row[3] for row in rows.values()), first.stdout
    jobs = _jobs(api, "warehouse-")
    assert len(jobs) == 2

    extract = _run(platform, rows["extract"][2])
    assert extract["status"] == "FINISHED"
    assert (extract["name"], extract["experiment"]) == ("warehouse/extract", "warehouse")
    assert extract["params"] == {"day": "2026-12-05"}
    assert extract["environment"]["image"] == IMAGE
    where = extract["environment"]["kubernetes"]
    assert where["target"] == "prod"
    assert where["job"] in jobs
    assert where["pods"] == [f"{where['job']}-x7k2p"]
    assert extract["code"]["files"] == 1  # the task app's step.py
    assert extract["command"] == ["/bin/sh", "-c", "python step.py"]
    shown = platform.cli("runs", "show", rows["load"][2]).stdout
    assert f"image      {IMAGE}" in shown
    assert re.search(r"job\s+warehouse-load-\S+ on prod", shown), shown
    assert not re.search(r"^\s+python\s", shown, re.MULTILINE), shown  # not this machine's
    # Its command ran in the image on the cluster: reproduce sends it there, runs nothing here.
    reproduced = platform.cli("reproduce", rows["extract"][2], check=False)
    assert reproduced.returncode != 0
    assert (
        f"ran in image {IMAGE} on target prod (Job {where['job']}), not on this machine; "
        "re-run it there with `conveyor task launch warehouse --target prod`"
    ) in reproduced.stderr, reproduced.stderr
    assert "Traceback" not in reproduced.stderr
    assert "Re-running" not in reproduced.stderr
    listed = json.loads(platform.cli("runs", "--experiment", "warehouse", "--json").stdout)
    assert sorted(run["id"][:12] for run in listed) == sorted(row[2] for row in rows.values())
    execution = re.search(r"execution ([0-9a-f]+) of warehouse", first.stdout)
    assert execution is not None
    log = platform.cli("task", "execution", "log", execution.group(1)).stdout
    assert "extracted 3 rows" in log  # the pod's log is the run's
    browser = logged_in(platform)
    try:
        page = browser.get(f"/ui/runs/{extract['id']}")
    finally:
        browser.close()
    assert page.status_code == 200
    assert IMAGE in page.text
    assert where["job"] in page.text

    # The same inputs again: no Job, each step served from its earlier run.
    again = _launch(platform, api, "warehouse", [], "--arguments", "--day=2026-12-05")
    assert again.returncode == 0, again.stdout + again.stderr
    cached = _rows(again.stdout)
    assert {name: (row[0], row[2], row[3]) for name, row in cached.items()} == {
        name: ("COMPLETED", row[2], True) for name, row in rows.items()
    }, again.stdout
    assert _jobs(api, "warehouse-") == jobs

    # Another parameter is another key: the steps run again.
    other = _launch(platform, api, "warehouse", ends, "--arguments", "--day=2026-12-06")
    assert other.returncode == 0, other.stdout + other.stderr
    assert not any(row[3] for row in _rows(other.stdout).values()), other.stdout
    assert len(_jobs(api, "warehouse-")) == 4


def test_a_failed_step_run_is_recorded_failed_and_never_reused(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "check", "python step.py")
    platform.cli("task", "create", "checks", "--definition", "check")
    failed = _launch(platform, api, "checks", [("checks-check-", 4, "2 rows without an id")])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    state, code, run, _cached = _rows(failed.stdout)["check"]
    assert (state, code) == ("FAILED", "exit 4"), failed.stdout
    record = _run(platform, run)
    assert (record["status"], record["exit_code"]) == ("FAILED", 4)
    assert "2 rows without an id" in record["error"]
    assert "FAILED" in platform.cli("runs", "--experiment", "checks").stdout

    passed = _launch(platform, api, "checks", [("checks-check-", 0, "all rows have an id")])
    assert passed.returncode == 0, passed.stdout + passed.stderr
    state, _code, second, cached = _rows(passed.stdout)["check"]
    assert (state, cached) == ("COMPLETED", False)
    assert second != run
    assert len(_jobs(api, "checks-check-")) == 2

    # --no-cache runs it even though a succeeded run matches.
    forced = _launch(platform, api, "checks", [("checks-check-", 0, "again")], "--no-cache")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert not _rows(forced.stdout)["check"][3]
    assert len(_jobs(api, "checks-check-")) == 3


def test_a_composed_schedule_on_a_target_is_the_platforms_and_managed_with_target(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "report", "python step.py")
    platform.cli("task", "create", "twostep", "--definition", "report && again: report")
    created = platform.cli(
        "task", "schedule", "create", "two-2am", "--task", "twostep", "--cron", "0 2 * * *",
        "--target", "prod", "--image", IMAGE, "--when-busy", "queue",
    ).stdout  # fmt: skip
    assert "created on prod: the platform launches twostep there at '0 2 * * *'" in created
    assert "two-2am" not in api.objects("CronJob")
    listed = platform.cli("task", "schedule", "list", "--target", "prod").stdout
    assert re.search(
        r"two-2am\s+twostep\s+0 2 \* \* \*\s+UTC\s+active\s+never fired\s+\(run by the platform\)",
        listed,
    ), listed
    assert "on prod" in platform.cli("task", "schedule", "list").stdout

    platform.cli("task", "schedule", "pause", "two-2am", "--target", "prod")
    assert "paused" in platform.cli("task", "schedule", "list", "--target", "prod").stdout
    platform.cli("task", "schedule", "resume", "two-2am", "--target", "prod")
    assert "active" in platform.cli("task", "schedule", "list", "--target", "prod").stdout
    browser = logged_in(platform)
    try:
        page = browser.get("/ui/tasks")
    finally:
        browser.close()
    assert re.search(r'twostep</a> <span class="muted">on prod</span>', page.text), page.text
    destroyed = platform.cli("task", "schedule", "destroy", "two-2am", "--target", "prod")
    assert "schedule two-2am destroyed on prod" in destroyed.stdout
    assert "two-2am" not in platform.cli("task", "schedule", "list").stdout

    # What a cluster cannot run is refused when the schedule is made, not when it fires.
    shared = "report --output=a.csv && again: report"
    platform.cli("task", "create", "sharing", "--definition", shared)
    refused = platform.cli(
        "task", "schedule", "create", "share-2am", "--task", "sharing", "--cron", "0 2 * * *",
        "--target", "prod", "--image", IMAGE, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "pods do not share" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "share-2am" not in platform.cli("task", "schedule", "list").stdout


def _at(hour: int, day: int = 6) -> float:
    return dt.datetime(2026, 12, day, hour, tzinfo=dt.UTC).timestamp()


def test_a_composed_schedule_fires_on_the_clock_and_runs_its_steps_as_jobs_on_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", f"sqlite:///{home / 'registry.db'}")
    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", str(home / "artifacts"))
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv("CONVEYOR_OPENLINEAGE", f"file://{events_file}")
    step = tmp_path / "step.py"
    step.write_text("print('step')\n")
    with fake_api(tmp_path) as api:
        target = KubernetesTarget(api.config(), builder=None, cluster=api.cluster(), poll=0.05)

        def clusters(name: str) -> KubernetesTarget:
            if name != "prod":
                raise NotFoundError(f"there is no target {name!r}")
            return target

        async def main() -> dict[str, Any]:
            settings = Settings.from_env()
            with Registry(settings.database_url) as registry:
                artifacts = ArtifactStore(settings.artifact_root)
                controller = Controller(
                    registry, artifacts, home / "platform", base_env=dict(os.environ)
                )
                service = TaskService(controller, runs_dir=home / "runs", clusters=clusters)
                files = {"step.py": {"digest": artifacts.put_file(step), "mode": 0o644}}
                for name in ("extract", "publish"):
                    app = TaskApp(name, "command", command="python step.py", files=files)
                    await service.register_app(app)
                service.create("nightly", "extract && publish")
                clock = FakeWall(_at(12, day=5))
                scheduler = TaskScheduler(service, clock)
                scheduler.create("nightly-2am", "nightly", "0 2 * * *", target="prod", image=IMAGE)
                try:
                    assert await scheduler.tick() == []  # not yet: nothing launched
                    assert not api.objects("Job")
                    clock.now = _at(2)
                    playing = threading.Thread(
                        target=lambda: [
                            end_job(api, "nightly-extract-", 0, "extracted"),
                            end_job(api, "nightly-publish-", 0, "published"),
                        ]
                    )
                    playing.start()
                    try:
                        fired = await scheduler.tick()
                        assert [e["message"] for e in fired] == ["launched"]
                        done = await service.wait(str(fired[0]["execution"]))
                    finally:
                        await asyncio.to_thread(playing.join, 60)
                    runs = {
                        s["name"]: registry.get_run(s["run_id"]).environment["image"]
                        for s in done["steps"]
                    }
                    return {"execution": done, "runs": runs}
                finally:
                    await service.close()
                    await controller.target.close()

        ran = asyncio.run(main())
        jobs = api.objects("Job")
    execution = ran["execution"]
    assert execution["state"] == "COMPLETED", execution
    assert execution["target"] == "prod"
    assert ran["runs"] == {"extract": IMAGE, "publish": IMAGE}
    assert sorted(n.rsplit("-", 2)[0] for n in jobs) == ["nightly-extract", "nightly-publish"]
    for job in jobs.values():
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    # Each step's run names the task execution as its OpenLineage parent, as locally.
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert sorted((e["job"]["name"], e["eventType"]) for e in events) == [
        ("nightly/extract", "COMPLETE"),
        ("nightly/extract", "START"),
        ("nightly/publish", "COMPLETE"),
        ("nightly/publish", "START"),
    ]
    for event in events:
        validate_event(event)
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_uuid(execution["id"])
        assert parent["job"] == {"namespace": "conveyor", "name": "nightly"}
