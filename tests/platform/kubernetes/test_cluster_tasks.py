"""`task launch/schedule --target T` and `stream info/undeploy --target T` against kmock.

The test plays the Job controller: it creates each Job's pod (with its
container's exit code) and patches the Job's ``/status`` over HTTP.
"""

from __future__ import annotations

import json
import re
import threading
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.oci_registry import skopeo
from tests.platform.control import Platform
from tests.waiting import eventually

from .conftest import registry_target, unreachable_target
from .fake_api import FakeApi
from .job_controller import IMAGE, end_job, find_job, register

pytestmark = pytest.mark.slow


def test_a_task_on_a_target_runs_each_step_as_a_job_with_the_same_records(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "prep", "python step.py")
    register(platform, "train", "python step.py --fit")
    platform.cli("task", "create", "nightly", "--definition", "prep && train")
    jobs: dict[str, dict[str, Any]] = {}

    def controller() -> None:
        jobs["prep"] = end_job(api, "nightly-prep-", 0, "prepared")
        jobs["train"] = end_job(api, "nightly-train-", 3, "no data for 2026-12-05")

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        launched = platform.cli(
            "task", "launch", "nightly", "--target", "prod", "--image", IMAGE,
            "--arguments", "--date=2026-12-05", "--wait",
        check=False)  # fmt: skip
    finally:
        playing.join(60)
    assert launched.returncode == 1, launched.stderr
    execution = re.search(r"execution ([0-9a-f]+) of nightly: FAILED", launched.stdout)
    assert execution is not None, launched.stdout
    lines = launched.stdout.splitlines()
    assert any(re.match(r"\s+prep\s+COMPLETED\s+exit 0", line) for line in lines), lines
    train = next(line for line in lines if line.strip().startswith("train"))
    assert re.match(r"\s+train\s+FAILED\s+exit 3", train), train
    assert "no data for 2026-12-05" in train  # the step's last log line is the reason

    box = jobs["prep"]["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == IMAGE
    assert box["command"] == ["/bin/sh", "-c", "python step.py"]
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert json.loads(env["CONVEYOR_PARAMS"]) == {"date": "2026-12-05"}
    assert jobs["prep"]["spec"]["backoffLimit"] == 0

    # The same records as a local execution: `task execution status` reads them back.
    status = platform.cli("task", "execution", "status", execution.group(1)).stdout
    assert "FAILED" in status
    assert "exit 3" in status


def test_what_a_cluster_cannot_run_is_refused_before_any_job(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "load", "python step.py")
    platform.cli("task", "create", "shared", "--definition", "load --output=data.csv")
    before = len(api.objects("Job"))
    shared = platform.cli("task", "launch", "shared", "--target", "prod", check=False)
    assert shared.returncode != 0
    assert "--output passes files between steps through this machine's folders" in shared.stderr
    assert "Traceback" not in shared.stderr
    assert len(api.objects("Job")) == before


def test_a_schedule_on_a_target_is_a_cronjob_paused_by_suspend(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "report", "python step.py")
    platform.cli("task", "create", "daily", "--definition", "report")
    created = platform.cli(
        "task", "schedule", "create", "daily-2am", "--task", "daily", "--cron", "0 2 * * *",
        "--target", "prod", "--image", IMAGE,
    ).stdout  # fmt: skip
    assert "schedule daily-2am created on prod: CronJob '0 2 * * *'" in created
    cronjob = api.objects("CronJob")["daily-2am"]
    assert cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["suspend"] is False
    box = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert (box["image"], box["command"]) == (IMAGE, ["/bin/sh", "-c", "python step.py"])
    assert "daily-2am" not in platform.cli("task", "schedule", "list").stdout  # not local

    listed = platform.cli("task", "schedule", "list", "--target", "prod").stdout
    assert re.search(r"daily-2am\s+daily\s+0 2 \* \* \*\s+UTC\s+active\s+never fired", listed)
    platform.cli("task", "schedule", "pause", "daily-2am", "--target", "prod")
    assert api.objects("CronJob")["daily-2am"]["spec"]["suspend"] is True
    assert "paused" in platform.cli("task", "schedule", "list", "--target", "prod").stdout
    platform.cli("task", "schedule", "resume", "daily-2am", "--target", "prod")
    assert api.objects("CronJob")["daily-2am"]["spec"]["suspend"] is False

    busy = platform.cli(
        "task", "schedule", "create", "daily-q", "--task", "daily", "--cron", "0 2 * * *",
        "--target", "prod", "--when-busy", "queue", check=False,
    )  # fmt: skip
    assert busy.returncode != 0
    assert "a CronJob skips a busy turn" in busy.stderr
    assert "daily-q" not in api.objects("CronJob")

    bad = platform.cli(
        "task", "schedule", "create", "bad", "--task", "daily", "--cron", "@daily",
        "--target", "prod", "--image", IMAGE, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "not a 5-field cron expression" in bad.stderr

    destroyed = platform.cli("task", "schedule", "destroy", "daily-2am", "--target", "prod")
    assert "schedule daily-2am destroyed on prod" in destroyed.stdout
    assert "daily-2am" not in api.objects("CronJob")
    gone = platform.cli("task", "schedule", "pause", "daily-2am", "--target", "prod", check=False)
    assert gone.returncode != 0
    assert "there is no schedule 'daily-2am'" in gone.stderr


def test_a_steps_image_is_built_from_its_task_apps_files_or_is_the_runtime_image(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    with registry_target(platform, tmp_path, "steps") as registry:
        register(platform, "score", "python step.py")
        folder = platform.project / "fitting"
        folder.mkdir()
        (folder / "jobs.py").write_text("def fit(**params):\n    print('fitted')\n")
        platform.cli("task", "app", "register", "--name", "fit", "--path", str(folder),
                     "--uri", "python:jobs:fit")  # fmt: skip
        platform.cli("task", "create", "scoring", "--definition", "score && timestamp && fit")
        jobs: dict[str, dict[str, Any]] = {}

        def controller() -> None:
            jobs["score"] = end_job(api, "scoring-score-", 0, "scored", patience=600)
            # After the runtime image is built (a few hundred MB: up to minutes on a busy machine).
            stamp = end_job(api, "scoring-timestamp-", 0, "2026-12-05T20:00", patience=600)
            jobs["timestamp"] = stamp
            jobs["fit"] = end_job(api, "scoring-fit-", 0, "fitted", patience=600)

        playing = threading.Thread(target=controller)
        playing.start()
        try:
            done = platform.cli(
                "task", "launch", "scoring", "--target", "steps", "--wait", timeout=600
            )
        finally:
            playing.join(600)
        assert "COMPLETED" in done.stdout
        image = jobs["score"]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith(f"{registry.host}/ds/score@sha256:")
        # The same files build the same images (pinned): a relaunch serves score and fit from
        # the cache; timestamp is never cached (the time differs), so its Job runs again.
        replaying = threading.Thread(
            target=lambda: end_job(api, "scoring-timestamp-", 0, "2026-12-05T21:00", patience=600)
        )
        replaying.start()
        try:
            again = platform.cli(
                "task", "launch", "scoring", "--target", "steps", "--wait", timeout=600
            )
        finally:
            replaying.join(600)
        for step in ("score", "fit"):
            assert re.search(
                rf"{step}\s+COMPLETED\s+exit 0\s+run [0-9a-f]{{12}} cached", again.stdout
            )
            assert [n for n in api.objects("Job") if n.startswith(f"scoring-{step}-")] == [
                jobs[step]["metadata"]["name"]
            ]
        # A built-in step runs Conveyor: in the runtime image the platform built for the target.
        box = jobs["timestamp"]["spec"]["template"]["spec"]["containers"][0]
        assert box["image"].startswith(f"{registry.host}/ds/conveyor-runtime@sha256:")
        assert box["command"] == ["python", "-m", "conveyor.tasks.builtins", "timestamp"]
        # A python: step with files: its files built on that runtime image.
        fit = jobs["fit"]["spec"]["template"]["spec"]["containers"][0]
        assert fit["image"].startswith(f"{registry.host}/ds/fit@sha256:")
        assert fit["command"][-2:] == ["python", "python:jobs:fit"]
        inspected = json.loads(
            skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{fit['image']}")
        )
        assert inspected["Labels"]["org.opencontainers.image.base.name"] == box["image"]
        assert inspected["Labels"]["dev.conveyor.kind"] == "python-step"


def test_a_python_step_pinning_a_runtime_package_at_another_version_is_refused_unpushed(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    installed = metadata.version("packaging")  # a requirement of Conveyor's: in the runtime
    other = "26.4" if installed != "26.4" else "26.3"  # both in uv's cache on this machine
    with registry_target(platform, tmp_path, "pins") as registry:
        folder = platform.project / "pinned"
        folder.mkdir()
        (folder / "jobs.py").write_text("def fit(**params):\n    print('fitted')\n")
        (folder / "requirements.txt").write_text(f"packaging=={other}\n")
        platform.cli("task", "app", "register", "--name", "pinned", "--path", str(folder),
                     "--uri", "python:jobs:fit")  # fmt: skip
        platform.cli("task", "create", "pinning", "--definition", "pinned")
        failed = platform.cli(
            "task", "launch", "pinning", "--target", "pins", "--wait", check=False, timeout=600
        )
        pushed = [r for r in registry.requests() if r.method in ("POST", "PUT")]
    assert failed.returncode == 1
    assert "of pinning: FAILED" in failed.stdout
    assert (
        f"the app's requirements pin packaging {other}, but the runtime image of this server's "
        f"Conveyor" in failed.stdout
    )
    assert f"has packaging {installed}" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert not [name for name in api.objects("Job") if name.startswith("pinning-")]
    assert [r.uri for r in pushed if "/ds/" in r.uri] == []  # not even the runtime image


def test_a_step_whose_image_cannot_be_built_fails_naming_the_registry(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    closed = unreachable_target(platform, "nowhere")
    register(platform, "fit", "python step.py")
    platform.cli("task", "create", "fitting", "--definition", "fit")
    failed = platform.cli(
        "task", "launch", "fitting", "--target", "nowhere", "--wait", check=False, timeout=300
    )
    assert failed.returncode == 1
    assert "of fitting: FAILED" in failed.stdout
    assert f"cannot reach the image registry {closed}" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert not [name for name in api.objects("Job") if name.startswith("fitting-")]


def test_stopping_an_execution_on_a_target_deletes_its_running_job(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    register(platform, "slow", "python step.py")
    platform.cli("task", "create", "lengthy", "--definition", "slow")
    started = platform.cli("task", "launch", "lengthy", "--target", "prod", "--image", IMAGE)
    execution = started.stdout.split()[1]
    job = eventually(partial(find_job, api, "lengthy-slow-"), what="the step's Job")
    stopped = platform.cli("task", "execution", "stop", execution).stdout
    assert f"execution {execution} of lengthy: STOPPED" in stopped
    assert re.search(r"slow\s+STOPPED", stopped), stopped
    eventually(lambda: job not in api.objects("Job"), what="the Job deleted")

    # A restart runs on the same target, in a Job of its own.
    playing = threading.Thread(target=lambda: end_job(api, "lengthy-slow-", 0, "done"))
    playing.start()
    try:
        again = platform.cli("task", "execution", "restart", execution, "--wait")
    finally:
        playing.join(60)
    assert f"execution {execution} of lengthy: COMPLETED" in again.stdout
    assert re.search(r"slow\s+COMPLETED\s+exit 0", again.stdout), again.stdout
    assert [name for name in api.objects("Job") if name.startswith("lengthy-slow-")] == [
        f"lengthy-slow-{execution[:8]}-2"
    ]
