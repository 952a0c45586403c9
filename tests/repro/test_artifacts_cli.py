"""``conveyor artifacts ls | get | gc`` and runs recorded in PostgreSQL."""

from __future__ import annotations

import pytest

from tests.repro.conftest import Cli
from tests.waiting import eventually


def test_gc_keeps_what_runs_reference_and_removes_the_rest(cli: Cli) -> None:
    (cli.project / "train.py").write_text("print('hi')\n")
    cli("run", "--output", "o.txt", "--", "sh", "-c", "python train.py > o.txt")
    run = cli.last_run()
    orphan_src = cli.project.parent / "orphan.bin"
    orphan_src.write_bytes(b"nobody refers to me")
    from conveyor.store.artifacts import ArtifactStore

    store = ArtifactStore(cli.home / "artifacts")
    orphan = store.put_file(orphan_src)

    listed = cli("artifacts", "ls").stdout
    assert orphan in listed
    assert run["files"][0]["digest"] in listed

    dry = cli("artifacts", "gc", "--dry-run").stdout
    assert "Would remove 1 artifacts" in dry
    assert store.exists(orphan)

    assert "Removed 1 artifacts" in cli("artifacts", "gc").stdout
    assert not store.exists(orphan)
    # Everything the run needs survives: its output, its logs, its code snapshot and files.
    assert cli("artifacts", "get", run["files"][0]["digest"]).stdout == "hi\n"
    manifest = cli("artifacts", "get", run["code"]["snapshot"]).stdout
    assert "train.py" in manifest
    assert cli("reproduce", run["id"], "--verify", "--no-env").returncode == 0


def test_get_writes_a_file_and_rejects_a_malformed_digest(cli: Cli) -> None:
    cli("run", "--output", "o.txt", "--", "sh", "-c", "echo data > o.txt")
    digest = cli.last_run()["files"][0]["digest"]
    target = cli.project.parent / "copy" / "o.txt"
    cli("artifacts", "get", digest, "-o", str(target))
    assert target.read_text() == "data\n"
    proc = cli("artifacts", "get", "../../etc/passwd", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


@pytest.mark.postgres
def test_runs_recorded_in_postgresql(cli: Cli, postgres_url: str) -> None:
    cli.extra_env["CONVEYOR_DATABASE_URL"] = postgres_url
    (cli.project / "t.py").write_text("import conveyor\nconveyor.log_metric('m', 2.5)\n")
    cli("run", "-p", "k=v", "--", "python", "t.py")
    run = cli.last_run()
    assert run["status"] == "FINISHED"
    assert run["params"] == {"k": "v"}
    assert run["metrics"] == {"m": 2.5}
    assert cli("reproduce", run["id"], "--verify", "--no-env").returncode == 0


def _await_running_row(cli: Cli) -> None:
    """The RUNNING row is written while the command starts; wait (bounded) until it is."""
    import json

    eventually(
        lambda: json.loads(cli("runs", "--json", "--status", "RUNNING").stdout),
        what="the run to show up as RUNNING",
        interval=0.1,
    )


def test_gc_waits_for_runs_that_are_still_recording(cli: Cli) -> None:
    import subprocess
    import sys

    (cli.project / "wait.py").write_text(
        "import sys\nprint('started', flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "--", "python", "wait.py"],
        cwd=cli.project,
        env=cli.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("started")
        _await_running_row(cli)
        refused = cli("artifacts", "gc", check=False)
        assert refused.returncode == 2
        assert "still recording" in refused.stderr
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()  # type: ignore[union-attr]
    assert "Removed" in cli("artifacts", "gc").stdout
