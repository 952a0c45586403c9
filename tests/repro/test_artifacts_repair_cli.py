"""``conveyor artifacts put | verify [--repair]``, and gc that never reads large artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conveyor.store.artifacts import ArtifactStore, digest_bytes
from conveyor.store.records import FileRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry
from tests.repro.conftest import Cli


def damage(store: ArtifactStore, digest: str) -> None:
    """Flip the first byte of a blob, as a disk fault would."""
    hexd = digest.removeprefix("blake3:")
    path = store.root / "blake3" / hexd[:2] / hexd[2:]
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_put_prints_the_digest_and_verify_passes_an_intact_store(cli: Cli) -> None:
    source = cli.project / "data.csv"
    source.write_bytes(b"a,b\n1,2\n")

    put = cli("artifacts", "put", str(source))

    assert put.stdout.strip() == digest_bytes(b"a,b\n1,2\n")
    verify = cli("artifacts", "verify")
    assert "Checked 1 artifacts" in verify.stdout
    assert "0 damaged" in verify.stdout
    missing = cli("artifacts", "put", str(cli.project / "nope.csv"), check=False)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_verify_names_damage_and_the_runs_that_need_it_and_repair_mends_it(cli: Cli) -> None:
    (cli.project / "train.py").write_text("open('o.txt', 'w').write('weights\\n')\n")
    cli("run", "--output", "o.txt", "--", "python", "train.py")
    run = cli.last_run()
    output = run["files"][0]["digest"]
    store = ArtifactStore(cli.home / "artifacts")
    code = digest_bytes((cli.project / "train.py").read_bytes())
    lost = store.put_bytes(b"content whose file is gone")
    for digest in (output, code, lost):
        damage(store, digest)

    found = cli("artifacts", "verify", check=False)

    assert found.returncode == 1
    assert "Traceback" not in found.stderr
    assert f"DAMAGED  {output}" in found.stdout
    assert f"needed by 1 run(s) as output: {run['id'][:12]}" in found.stdout
    assert f"needed by 1 run(s) as code: {run['id'][:12]}" in found.stdout
    assert "needed by no run" in found.stdout
    assert "3 damaged artifact(s) remain" in found.stderr

    repaired = cli("artifacts", "verify", "--repair", check=False)

    assert f"repaired from {cli.project / 'o.txt'}" in repaired.stdout
    assert f"repaired from {cli.project / 'train.py'}" in repaired.stdout
    assert "not repaired" in repaired.stdout
    assert repaired.returncode == 1  # the blob with no source is still damaged
    assert "1 damaged artifact(s) remain" in repaired.stderr
    assert cli("artifacts", "get", output).stdout == "weights\n"
    assert cli("reproduce", run["id"], "--verify", "--no-env").returncode == 0

    store.delete(lost)
    assert cli("artifacts", "verify").returncode == 0


# -- gc reads no large artifact -------------------------------------------------------

# Linux carries a process's peak RSS across exec, so a child forked from this (large) test
# process would report the test's own size: a small Python in between starts gc afresh and
# reads the peak of its child.
_MEASURE = textwrap.dedent(
    """
    import resource, subprocess, sys
    gc = [sys.executable, "-m", "conveyor", "artifacts", "gc", "--dry-run"]
    proc = subprocess.run(gc, capture_output=True, text=True)
    print(proc.stdout, end="")
    print(proc.stderr, end="", file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print("PEAK", peak, file=sys.stderr)
    sys.exit(proc.returncode)
    """
)


def test_gc_dry_run_memory_does_not_follow_artifact_size(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = ArtifactStore(home / "artifacts")
    snapshot = store.put_json(
        {"version": 1, "files": [{"path": "train.py", "digest": digest_bytes(b"x"), "mode": 420}]}
    )
    store.put_bytes(b"x")
    orphan = store.put_bytes(b"nobody needs this")
    # A 2 GiB dataset output, simulated by a sparse file put where its blob lives.
    big = "blake3:" + "ab" * 32
    blob = store.root / "blake3" / "ab" / ("ab" * 31)
    blob.parent.mkdir(parents=True, exist_ok=True)
    with blob.open("wb") as f:
        f.truncate(2 << 30)
    with Registry(f"sqlite:///{home / 'registry.db'}") as registry:
        registry.create_run(
            RunRecord(
                id="f" * 32,
                name="train",
                status=RunStatus.RUNNING,
                command=["python", "train.py"],
                cwd=str(tmp_path),
                started_at=1.0,
                seed=1,
                host="h",
                code={"snapshot": snapshot},
                environment={},
            )
        )
        registry.add_files("f" * 32, [FileRecord("output", "data.parquet", big, 2 << 30)])
        registry.finish_run("f" * 32, RunStatus.FINISHED, ended_at=2.0, exit_code=0)

    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE],
        env={"CONVEYOR_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "Would remove 1 artifacts" in proc.stdout
    peak = int(proc.stderr.split("PEAK")[-1])
    assert peak < 200 * 1024 * 1024, f"gc --dry-run peaked at {peak / 2**20:.0f} MiB"
    assert store.exists(orphan)
    assert json.loads(store.read_bytes(snapshot))["version"] == 1
