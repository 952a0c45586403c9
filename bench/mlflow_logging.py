"""Logging cost: Conveyor's Python API inside ``conveyor run`` against MLflow tracking.

The same script logs 10 parameters and 1,000 metric values (one key, steps
0..999) one call at a time, through:

- ``conveyor.param`` / ``conveyor.log_metric`` inside ``conveyor run``;
- ``mlflow.log_param`` / ``mlflow.log_metric`` with the file store (``file:./mlruns``);
- the same with the SQLite store (``sqlite:///mlflow.db``).

Inside the script the calls are timed (total and per call); outside, the wall
time of the whole command (interpreter start, imports, run start and end, and
for Conveyor the whole recording). Commands alternate round by round; medians
are kept. MLflow lives in its own virtual environment, never in Conveyor's:

    python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow
    .venv/bin/python -m bench.mlflow_logging --mlflow-python /tmp/mlflow-venv/bin/python
    .venv/bin/python -m bench.mlflow_logging --quick     # 100 metric values, 2 rounds

(or set CONVEYOR_BENCH_MLFLOW_PYTHON). Without it the benchmark says how to
make it and stops. Everything is written in a temporary folder, deleted
afterwards; MLflow's telemetry is switched off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._runs import CONVEYOR, Timed, Workspace, load, rounds, workspace

ENV_VAR = "CONVEYOR_BENCH_MLFLOW_PYTHON"
DEFAULT_MLFLOW_PYTHON = Path("/tmp/mlflow-venv/bin/python")
PARAMS = 10

LOG_SCRIPT = '''\
"""Log 10 params and N metric values through one tracking API; print the timings as JSON."""

import json
import sys
import time

t0 = time.perf_counter()
tool, n = sys.argv[1], int(sys.argv[2])
if tool == "mlflow":
    import mlflow

    mlflow.set_tracking_uri(sys.argv[3])
    mlflow.set_experiment("bench")
    run = mlflow.start_run()
    log_param, log_metric = mlflow.log_param, mlflow.log_metric
else:
    import conveyor

    log_param, log_metric = conveyor.param, conveyor.log_metric
t1 = time.perf_counter()
for k in range(10):
    log_param(f"p{k}", k)
t2 = time.perf_counter()
for i in range(n):
    log_metric("loss", 1.0 / (i + 1), step=i)
t3 = time.perf_counter()
if tool == "mlflow":
    mlflow.end_run()
t4 = time.perf_counter()
stored = None
if tool == "mlflow":
    stored = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss"))
times = {"setup": t1 - t0, "params": t2 - t1, "metrics": t3 - t2, "end": t4 - t3}
print(json.dumps({"times": times, "stored": stored}))
'''

HOW_TO = f"""MLflow is not available: this benchmark needs it in a separate virtual environment
(never in Conveyor's .venv). Create it with

    python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow

then run  .venv/bin/python -m bench.mlflow_logging --mlflow-python /tmp/mlflow-venv/bin/python
(or set {ENV_VAR}=/tmp/mlflow-venv/bin/python)."""


def find_mlflow_python(given: str | None) -> Path | None:
    candidate = given or os.environ.get(ENV_VAR)
    path = Path(candidate) if candidate else DEFAULT_MLFLOW_PYTHON
    return path if path.is_file() and os.access(path, os.X_OK) else None


def timings(result: Timed) -> dict[str, Any]:
    line = next(x for x in reversed(result.stdout.splitlines()) if x.startswith("{"))
    data: dict[str, Any] = json.loads(line)
    return data


def check_conveyor(ws: Workspace, runs: int, metrics: int) -> str:
    from conveyor.config import Settings
    from conveyor.store.registry import Registry

    with Registry.from_settings(Settings.from_env({"CONVEYOR_HOME": str(ws.home)})) as registry:
        recorded = [registry.get_run(r.id) for r in registry.list_runs(limit=runs + 10)]
    wrong = [r.id[:12] for r in recorded if len(r.params) != PARAMS or len(r.metrics) != metrics]
    if len(recorded) != runs or wrong:
        return f"PROBLEM: {len(recorded)} Conveyor runs for {runs}; incomplete: {wrong}"
    return f"all {runs} Conveyor runs hold {PARAMS} params and {metrics} metric values"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mlflow_logging", description="Logging cost against MLflow."
    )
    parser.add_argument(
        "--mlflow-python",
        help=f"python of a venv with mlflow (default: ${ENV_VAR}, else {DEFAULT_MLFLOW_PYTHON})",
    )
    parser.add_argument("--metrics", type=int, default=1000, help="metric values (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="100 metric values, 2 rounds")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where to make the workspace")
    parser.add_argument(
        "--max-minutes", type=float, default=15.0, help="stop starting rounds after this long"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.metrics, args.rounds = 100, 2
    mlflow_python = find_mlflow_python(args.mlflow_python)
    if mlflow_python is None:
        print(HOW_TO)
        return 0

    with workspace(args, "conveyor-bench-mlflow-") as ws:
        # MLflow 3 refuses the file store unless asked for (it is in maintenance mode).
        ws.env.update(
            MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", MLFLOW_ALLOW_FILE_STORE="true"
        )
        ws.write_project({"log.py": LOG_SCRIPT})
        version = ws.run(
            [str(mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"], capture=True
        ).stdout.strip()
        print(f"mlflow {version} ({mlflow_python})", flush=True)
        n = str(args.metrics)
        mlflow = [str(mlflow_python), "log.py", "mlflow", n]
        conveyor = ["python", "log.py", "conveyor", n]
        commands = {
            "Conveyor API in conveyor run": [str(CONVEYOR), "run", "--", *conveyor],
            "MLflow, file store": [*mlflow, f"file:{ws.project / 'mlruns'}"],
            "MLflow, SQLite store": [*mlflow, f"sqlite:///{ws.project / 'mlflow.db'}"],
        }
        print("warming up (bytecode caches, stores, SQLite schemas)", flush=True)
        for command in commands.values():
            ws.run(command, capture=True)
        conveyor_runs = 1
        samples: dict[str, list[Timed]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in rounds(args):
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                result = ws.run(commands[name], capture=True)
                samples[name].append(result)
                conveyor_runs += name.startswith("Conveyor")
                stored = timings(result)["stored"]
                if stored is not None and stored != args.metrics:
                    raise SystemExit(f"{name} stored {stored} metric values, not {args.metrics}")
            print(f"round {round_ + 1} done", flush=True)
        check = check_conveyor(ws, conveyor_runs, args.metrics)
    print(f"load average at end: {load()}")
    print(check)
    print(f"every MLflow run read back {args.metrics} metric values")
    print()
    print(report(samples, args.metrics))
    return 0


def report(samples: dict[str, list[Timed]], metrics: int) -> str:
    def med(name: str, part: str) -> float:
        return float(statistics.median(timings(t)["times"][part] for t in samples[name]))

    base = "Conveyor API in conveyor run"
    rows = []
    for name, timed in samples.items():
        param_us = med(name, "params") / PARAMS * 1e6
        metric_us = med(name, "metrics") / metrics * 1e6
        calls = med(name, "params") + med(name, "metrics")
        wall = statistics.median(t.wall for t in timed)
        rows.append((name, param_us, metric_us, calls, wall))
    conveyor = rows[0]
    assert conveyor[0] == base
    lines = [
        f"{len(samples[base])} rounds; median of each; x = this tool / Conveyor",
        "",
        f"| tool | per log_param µs | per log_metric µs | all {PARAMS + metrics:,} calls s "
        "| whole command s |"
        " x log_param | x log_metric | x calls | x command |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, param_us, metric_us, calls, wall in rows:
        lines.append(
            f"| {name} | {param_us:,.0f} | {metric_us:,.0f} | {calls:.3f} | {wall:.3f} | "
            f"{param_us / conveyor[1]:.1f} | {metric_us / conveyor[2]:.1f} | "
            f"{calls / conveyor[3]:.1f} | {wall / conveyor[4]:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
