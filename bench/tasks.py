"""Composed tasks: 20 trivial steps against a shell script and Prefect, a cached relaunch.

Everything runs on a local target in this process (the platform's own code
path: executor → target.launch → a recorded run per step), in a temporary
CONVEYOR_HOME deleted afterwards. Measured, median of the rounds:

- ``sh -c 'true; true; ...'`` (20 times)          the bare processes
- a 20-step task ``s1: shell --command=true && ...``, launched with --no-cache
- the same task relaunched with every step cached
- launch → first step started, one step's end → the next one's start

    .venv/bin/python -m bench.tasks            # 3 rounds
    .venv/bin/python -m bench.tasks --quick    # 1 round

- the same 20 steps as a Prefect flow (``bench/_prefect_flow.py``: 20 tasks each
  running ``/bin/true``), in a venv of its own with Prefect from PyPI (made
  with uv in ``$TMPDIR/conveyor-bench-prefect`` on first use, then reused),
  on Prefect's ephemeral local server: its first flow run (server start-up
  included) and the median of the warm runs after it

Goals (issue 12): under 100 ms per step over the bare process and faster than
Prefect; a cached relaunch under 1 s; launch → first step and step → next step
under 50 ms. ``--no-prefect`` leaves Prefect out.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = 20
PREFECT_VENV = Path(tempfile.gettempdir()) / "conveyor-bench-prefect"
UV = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "uv"


def _prefect_python() -> Path:
    """The Prefect venv's Python, made (once) with uv; Prefect never enters our own venv."""
    python = PREFECT_VENV / "bin" / "python"
    if not python.exists():
        uv = str(UV) if UV.exists() else shutil.which("uv") or "uv"
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([uv, "venv", "-q", "-p", base, str(PREFECT_VENV)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "-p", str(python), "prefect"], check=True)
    return python


def _prefect_seconds(rounds: int, home: Path) -> dict[str, Any]:
    """The flow under Prefect: {"first", "warm", "version"} or {"error"}."""
    try:
        python = _prefect_python()
    except (OSError, subprocess.CalledProcessError) as exc:
        return {"error": f"could not install Prefect: {exc}"}
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A loaded machine starts the ephemeral server in more than the default 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    script = Path(__file__).with_name("_prefect_flow.py")
    # -P: the script's folder (bench/, which has a `platform` package) is not on sys.path.
    done = subprocess.run(
        [str(python), "-P", str(script), str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or done.returncode}
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    version = subprocess.run(
        [str(python), "-c", "import prefect; print(prefect.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    found["version"] = version.stdout.strip()
    return found


def _definition() -> str:
    return " && ".join(f"s{i}: shell --command=true" for i in range(1, STEPS + 1))


def _shell_seconds() -> float:
    started = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", "; ".join(["/bin/true"] * STEPS)], check=True)
    return time.perf_counter() - started


def _separate_processes_seconds() -> float:
    """20 processes one after another, as 20 separate steps are (each its own exec)."""
    started = time.perf_counter()
    for _ in range(STEPS):
        subprocess.run(["/bin/true"], check=True)
    return time.perf_counter() - started


def _latencies(doc: dict[str, Any]) -> tuple[float, float]:
    steps = sorted(doc["steps"], key=lambda s: s["started_at"])
    first = steps[0]["started_at"] - doc["started_at"]
    gaps = [b["started_at"] - a["ended_at"] for a, b in itertools.pairwise(steps)]
    return first, statistics.median(gaps)


async def _measure(home: Path, rounds: int) -> dict[str, list[float]]:
    from conveyor.config import Settings
    from conveyor.orchestrate.tasks import TaskService
    from conveyor.platform import Controller, LocalTarget
    from conveyor.platform.instance_env import platform_env
    from conveyor.platform.isolation import IsolatedSpawner
    from conveyor.store.apps import AppRepository
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.registry import Registry

    settings = Settings.from_env()
    found: dict[str, list[float]] = {k: [] for k in ("run", "cached", "first", "gap")}
    with Registry(settings.database_url) as registry:
        # As `conveyor up` runs steps: sandboxed (CONVEYOR_ISOLATION=none: not).
        spawner = IsolatedSpawner(settings)
        print(f"steps isolated by: {spawner.check().describe()}")
        target = LocalTarget(AppRepository(registry), base_env=platform_env(), spawner=spawner)
        controller = Controller(
            registry, ArtifactStore(settings.artifact_root), home / "platform", target=target
        )
        service = TaskService(controller, runs_dir=home / "runs")
        service.create("twenty", _definition())
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                doc = await service.wait((await service.launch("twenty", no_cache=True))["id"])
                found["run"].append(time.perf_counter() - started)
                assert doc["state"] == "COMPLETED", doc["reason"]
                first, gap = _latencies(doc)
                found["first"].append(first)
                found["gap"].append(gap)
                started = time.perf_counter()
                doc = await service.wait((await service.launch("twenty"))["id"])
                found["cached"].append(time.perf_counter() - started)
                assert all(s["cached"] for s in doc["steps"])
        finally:
            await service.close()
            await controller.target.close()
    return found


def main(argv: list[str]) -> None:
    rounds = 1 if "--quick" in argv else 3
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        home = Path(tmp)
        os.environ.update(
            CONVEYOR_HOME=str(home),
            CONVEYOR_DATABASE_URL=f"sqlite:///{home / 'registry.db'}",
            CONVEYOR_ARTIFACT_ROOT=str(home / "artifacts"),
        )
        shell = statistics.median(_shell_seconds() for _ in range(rounds))
        separate = statistics.median(_separate_processes_seconds() for _ in range(rounds))
        found = asyncio.run(_measure(home, rounds))
        prefect = None if "--no-prefect" in argv else _prefect_seconds(rounds, home)
    run = statistics.median(found["run"])
    per_step = (run - separate) / STEPS * 1000
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load {load:.1f}, Python {sys.version.split()[0]}")
    print(f"{STEPS} steps of `true`, median of {rounds} round(s):")
    print(f"  one shell script:            {shell * 1000:8.1f} ms")
    print(f"  {STEPS} separate processes:      {separate * 1000:8.1f} ms")
    over = f"({per_step:.0f} ms per step over bare)"
    print(f"  composed task (--no-cache):  {run * 1000:8.1f} ms  {over}")
    print(f"  composed task, all cached:   {statistics.median(found['cached']) * 1000:8.1f} ms")
    print(f"  launch -> first step:        {statistics.median(found['first']) * 1000:8.1f} ms")
    print(f"  step end -> next step start: {statistics.median(found['gap']) * 1000:8.1f} ms")
    if prefect is None:
        return
    if "error" in prefect:
        print(f"  Prefect: not measured ({prefect['error']})")
        return
    warm = prefect["warm"]
    per = (warm - separate) / STEPS * 1000
    print(f"  Prefect {prefect['version']} flow, first run:  {prefect['first'] * 1000:8.1f} ms")
    over = f"({per:.0f} ms per step over bare)"
    print(f"  Prefect flow, warm (median): {warm * 1000:8.1f} ms  {over}")
    print(f"  composed task / Prefect warm: {run / warm:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
