"""Bad input and faults: a clear message, a non-zero exit, and a consistent registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.repro.conftest import Cli
from tests.waiting import eventually


def test_parameter_given_twice(cli: Cli) -> None:
    proc = cli("run", "-p", "n=1", "-p", "n=2", "--", "true", check=False)
    assert proc.returncode == 2
    assert "parameter 'n' is given twice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_input(cli: Cli) -> None:
    proc = cli("run", "--input", "data/nope.csv", "--", "true", check=False)
    assert proc.returncode == 1
    assert "input data/nope.csv does not exist" in proc.stderr
    assert json.loads(cli("runs", "--json").stdout) == []  # nothing half-recorded


def test_unknown_run_id(cli: Cli) -> None:
    for args in (["runs", "show", "abc123"], ["reproduce", "abc123"], ["runs", "diff", "a", "b"]):
        proc = cli(*args, check=False)
        assert proc.returncode == 1
        assert "no run with id" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_database_that_does_not_answer(cli: Cli) -> None:
    cli.extra_env["CONVEYOR_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    proc = cli("run", "--", "true", check=False)
    assert proc.returncode == 1
    assert "does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_database_driver_that_is_not_installed_is_one_line(cli: Cli) -> None:
    cli.extra_env["CONVEYOR_DATABASE_URL"] = "mysql://me@127.0.0.1/conveyor"
    proc = cli("runs", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "Error: CONVEYOR_DATABASE_URL=mysql://me@127.0.0.1/conveyor needs the database driver "
        "'MySQLdb', which is not installed: pip install mysqlclient "
        "(Conveyor is tested on SQLite and PostgreSQL)"
    ]


def test_tree_larger_than_the_snapshot_limit(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("big.txt", "x" * 5000)
    cli.extra_env["CONVEYOR_SNAPSHOT_LIMIT"] = "1K"
    proc = cli("run", "--", "true", check=False)
    assert proc.returncode == 1
    assert "snapshot limit" in proc.stderr
    assert "CONVEYOR_SNAPSHOT_LIMIT" in proc.stderr  # says how to raise it
    # Sizes a user can read, not "0.0 MB ... 0.0 MB".
    assert "holds 4.9 KB, more than the snapshot limit of 1.0 KB" in proc.stderr
    assert "big.txt (4.9 KB)" in proc.stderr


SLEEPER = """
import os, sys, time
print("started", os.getpid(), flush=True)
time.sleep(300)
"""


def _start_and_wait(cli: Cli, script: str) -> tuple[subprocess.Popen[str], int]:
    """Start `conveyor run -- python script` and wait until the command prints its pid."""
    proc = cli.start("run", "--", "python", script)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the child has started (or died)
    assert line.startswith("started"), line
    return proc, int(line.split()[1])


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_child_killed_by_sigkill(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("sleep.py", SLEEPER)
    proc, pid = _start_and_wait(cli, "sleep.py")
    os.kill(pid, signal.SIGKILL)
    code, _ = _finish(proc)
    assert code == 128 + signal.SIGKILL
    run = cli.last_run()
    assert run["status"] == "KILLED"
    assert "SIGKILL" in run["error"]
    assert "started" in cli("artifacts", "get", run["stdout"]).stdout  # logs it had written


def test_child_killed_by_sigterm(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("sleep.py", SLEEPER)
    proc, pid = _start_and_wait(cli, "sleep.py")
    os.kill(pid, signal.SIGTERM)
    code, _ = _finish(proc)
    assert code == 128 + signal.SIGTERM
    assert cli.last_run()["status"] == "KILLED"


def test_ctrl_c_records_interrupted(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("sleep.py", SLEEPER)
    proc, _ = _start_and_wait(cli, "sleep.py")
    proc.send_signal(signal.SIGINT)  # as Ctrl-C reaches conveyor
    code, err = _finish(proc)
    assert code != 0
    run = cli.last_run()
    assert run["status"] == "INTERRUPTED"
    assert "Traceback" not in err.split("KeyboardInterrupt")[0] or "KeyboardInterrupt" in err


def test_corrupted_artifact_is_reported_not_returned(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    cli("run", "--output", "o.txt", "--", "sh", "-c", "echo precious > o.txt")
    digest = cli.last_run()["files"][0]["digest"]
    algo, hexd = digest.split(":")
    blob = cli.home / "artifacts" / algo / hexd[:2] / hexd[2:]
    blob.chmod(0o644)
    blob.write_text("tampered\n")
    proc = cli("artifacts", "get", digest, check=False)
    assert proc.returncode == 1
    assert "tampered" not in proc.stdout
    assert digest in proc.stderr


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in (b"Z", b"X")


def test_a_run_whose_recorder_died_shows_as_lost_and_its_command_ends(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    import json

    write("sleep.py", SLEEPER)
    proc, child_pid = _start_and_wait(cli, "sleep.py")
    eventually(
        lambda: json.loads(cli("runs", "--json", "--status", "RUNNING").stdout),
        what="the run to show up as RUNNING",
        interval=0.1,
    )
    proc.kill()  # conveyor itself dies (kill -9), leaving its run unfinished
    proc.communicate(timeout=60)
    # The command does not run on unrecorded: it dies with its recorder.
    eventually(lambda: _gone(child_pid), what="the command to die with conveyor run")
    (listed,) = json.loads(cli("runs", "--json").stdout)
    assert listed["status"] == "LOST"
    assert "LOST" in cli("runs").stdout
    assert [r["id"] for r in json.loads(cli("runs", "--json", "--status", "lost").stdout)] == [
        listed["id"]
    ]
    assert json.loads(cli("runs", "--json", "--status", "running").stdout) == []


def test_a_command_that_cannot_start(cli: Cli) -> None:
    proc = cli("run", "--", "no-such-command-xyz", check=False)
    assert proc.returncode == 1
    assert "cannot start 'no-such-command-xyz'" in proc.stderr
    assert "Traceback" not in proc.stderr
    import json

    (run,) = json.loads(cli("runs", "--json").stdout)
    assert run["status"] == "FAILED"
    assert run["exit_code"] == 127
