"""``conveyor task ...`` against a real platform: the issue's commands, their errors and exits,
and a platform killed with -9 mid-execution, then started again."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.control import Platform, running_platform
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: it only waits for its parent to collect it.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("tasks-platform")) as running:
        yield running


def test_register_create_launch_status_log_and_restart(platform: Platform) -> None:
    folder = platform.project / "pipeline"
    folder.mkdir()
    (folder / "prepare.py").write_text(
        "import conveyor\nopen('data.txt', 'w').write(conveyor.param('date', '?'))\n"
    )
    (folder / "report.py").write_text("print('report for', open('data.txt').read())\n")
    python = sys.executable
    out = platform.cli(
        "task",
        "app",
        "register",
        "--name",
        "prepare",
        "--path",
        str(folder),
        "--command",
        f"{python} prepare.py",
    )
    assert "task app prepare registered" in out.stdout
    platform.cli(
        "task",
        "app",
        "register",
        "--name",
        "report",
        "--path",
        str(folder),
        "--command",
        f"{python} report.py",
    )
    created = platform.cli(
        "task",
        "create",
        "daily",
        "--definition",
        "prepare --output=data.txt && report --input=@prepare/data.txt 'FAILED'->timestamp",
    )
    assert "task daily created: prepare, report, timestamp" in created.stdout
    launched = platform.cli("task", "launch", "daily", "--arguments", "--date=2026-12-05", "--wait")
    assert "COMPLETED" in launched.stdout
    execution = launched.stderr.split("execution ")[1].split()[0]
    log = platform.cli("task", "execution", "log", execution, "--step", "report")
    assert "report for 2026-12-05" in log.stdout
    listed = platform.cli("task", "execution", "list")
    assert execution in listed.stdout
    assert "daily" in platform.cli("task", "list").stdout
    assert "prepare (prepare)" in platform.cli("task", "info", "daily").stdout
    assert "daily: valid" in platform.cli("task", "validate", "daily").stdout

    refused = platform.cli("task", "execution", "restart", execution, check=False)
    assert refused.returncode != 0
    assert "nothing failed to restart" in refused.stderr

    again = platform.cli("task", "launch", "daily", "--arguments", "--date=2026-12-05", "--wait")
    assert again.stdout.count("cached") == 2
    platform.cli("task", "destroy", "daily")
    assert "daily" not in platform.cli("task", "list").stdout


def test_bad_input_gets_a_clear_error_and_a_non_zero_exit(platform: Platform) -> None:
    dsl = platform.cli("task", "create", "t", "--definition", "timestamp & shell", check=False)
    assert dsl.returncode != 0
    assert "150E:(pos 10)" in dsl.stderr
    assert "^" in dsl.stderr
    unknown = platform.cli("task", "create", "t", "--definition", "nope", check=False)
    assert "unknown app 'nope'" in unknown.stderr
    label = platform.cli(
        "task", "create", "t", "--definition", "timestamp 'X'->:nowhere", check=False
    )
    assert "160E" in label.stderr
    missing = platform.cli("task", "execution", "status", "abcdef", check=False)
    assert missing.returncode != 0
    assert "no task execution" in missing.stderr
    arguments = platform.cli("task", "launch", "t", "--arguments", "date=1", check=False)
    assert "is not --name=value" in arguments.stderr


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose working folder is ``folder`` (a sandboxed step's own pids differ)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = (entry / "cwd").resolve(strict=True)
            except OSError:
                continue
            if cwd == folder.resolve() and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_a_platform_killed_mid_execution_leaves_it_stopped_and_restartable(
    platform: Platform,
) -> None:
    # The step is sandboxed: it sees its own folder only, so it waits there, until the
    # restart gives it the argument go.
    platform.cli(
        "task",
        "create",
        "long",
        "--definition",
        'first: shell --command=\'touch started; until case "$CONVEYOR_PARAMS" in'
        " *go*) true;; *) false;; esac; do sleep 0.1; done' && second: shell --command='echo done'",
    )
    started = platform.cli("task", "launch", "long")
    execution = started.stdout.split()[1]
    work = platform.settings.platform_dir / "task-work" / execution / "first-1"
    eventually((work / "started").exists, what="the step to start")
    step_pids = _processes_in(work)
    assert step_pids
    assert platform.process is not None
    os.killpg(platform.process.pid, signal.SIGKILL)
    platform.process.wait()
    platform.start()
    # The step's process, left running by the killed platform, is stopped by the new one.
    eventually(
        lambda: not any(_alive(pid) for pid in step_pids), what="the orphaned step to be stopped"
    )
    status = platform.cli("task", "execution", "status", execution)
    assert f"execution {execution} of long: STOPPED" in status.stdout
    assert "the platform stopped while it ran" in status.stdout
    restarted = platform.cli(
        "task", "execution", "restart", execution, "--arguments", "--go=1", "--wait"
    )
    assert "COMPLETED" in restarted.stdout
    assert restarted.stdout.count("COMPLETED") == 3


def test_schedule_commands(platform: Platform) -> None:
    platform.cli("task", "create", "tick", "--definition", "timestamp")
    created = platform.cli(
        "task",
        "schedule",
        "create",
        "nightly-2am",
        "--task",
        "tick",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/London",
    )
    assert "schedule nightly-2am created: tick next at" in created.stdout
    assert "0 2 * * *" in platform.cli("task", "schedule", "list").stdout
    platform.cli("task", "schedule", "pause", "nightly-2am")
    assert "paused" in platform.cli("task", "schedule", "list").stdout
    assert "next at" in platform.cli("task", "schedule", "resume", "nightly-2am").stdout
    bad = platform.cli(
        "task", "schedule", "create", "x", "--task", "tick", "--cron", "0 24 * * *", check=False
    )
    assert bad.returncode != 0
    assert "the hour field has 24; expected 0-23" in bad.stderr
    zone = platform.cli(
        "task",
        "schedule",
        "create",
        "x",
        "--task",
        "tick",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Nowhere/Land",
        check=False,
    )
    assert "unknown time zone 'Nowhere/Land'" in zone.stderr
    platform.cli("task", "schedule", "destroy", "nightly-2am")
    assert "nightly-2am" not in platform.cli("task", "schedule", "list").stdout
    queued = ("task", "schedule", "create", "q", "--task", "tick", "--cron", "0 2 * * *")
    platform.cli(*queued, "--when-busy", "queue")
    assert "queue" in platform.cli("task", "schedule", "list").stdout
    wrong = platform.cli(*queued, "--when-busy", "wait", check=False)
    assert wrong.returncode == 2
    assert "'wait' is not one of 'skip', 'queue'" in wrong.stderr
