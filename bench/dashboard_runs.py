"""The runs page with 10,000 runs (10 params, 10 metrics each), against MLflow's UI listing them.

Both registries hold the same runs: Conveyor's (SQLite, filled through the
store's tables) and MLflow's own SQLite store (one run logged through MLflow,
then cloned row by row in MLflow's tables, so every column MLflow wants is
there). Each server runs as a process on a free loopback port; the client
times whole HTTP requests:

- Conveyor: ``GET /ui/runs`` — the page as the browser gets it, rendered HTML (25 runs);
- MLflow: ``POST /ajax-api/2.0/mlflow/runs/search`` — the JSON its React UI asks for to draw
  its runs table (then renders it in the browser), at 25 runs and at 100.

Three listings each: the newest runs; a search (``metrics.m0 > 0.5 and params.p1 = 5``);
sorted by a metric. Requests alternate tool by tool; medians of ``--rounds``.

    .venv/bin/python -m bench.dashboard_runs                     # 10,000 runs; installs MLflow
    .venv/bin/python -m bench.dashboard_runs --mlflow-python /path/to/venv/bin/python
    .venv/bin/python -m bench.dashboard_runs --runs 1000 --rounds 5   # quick

Without ``--mlflow-python`` MLflow is installed into a virtual environment in
the benchmark's temporary folder (``.tools/bin/uv venv`` + ``uv pip install
mlflow``), never into Conveyor's. Everything is deleted afterwards.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench._runs import machine
from bench.platform._control import free_port, platform_env, platform_server, until

ROOT = Path(__file__).resolve().parent.parent
PARAMS, METRICS = 10, 10
PAGE = 25

#: Runs in MLflow's venv: log one run, then clone its rows to N runs with other values.
MLFLOW_FILL = r"""
import random, sqlite3, sys, time
import mlflow
from mlflow.entities import Metric, Param

db, n = sys.argv[1], int(sys.argv[2])
mlflow.set_tracking_uri(f"sqlite:///{db}")
client = mlflow.MlflowClient()
experiment = client.create_experiment("bench")
run = client.create_run(experiment, run_name="train-0")
now = int(time.time() * 1000)
client.log_batch(
    run.info.run_id,
    metrics=[Metric(f"m{k}", 0.5, now, 0) for k in range(10)],
    params=[Param(f"p{k}", "0") for k in range(10)],
)
client.set_terminated(run.info.run_id)
template = run.info.run_id
conn = sqlite3.connect(db)
conn.row_factory = sqlite3.Row
tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
for table in tables:
    columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
    if "run_uuid" not in columns:
        continue
    rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE run_uuid=?", (template,))]
    clones = []
    for i in range(1, n):
        run_id = f"{i:032x}"
        for row in rows:
            row = dict(row, run_uuid=run_id)
            if table == "runs":
                row.update(name=f"train-{i}", start_time=now - (n - i) * 1000,
                           end_time=now - (n - i) * 1000 + 500)
            elif table == "params":
                row["value"] = str((i * 31 + int(row["key"][1:]) * 17) % 10)
            elif table in ("metrics", "latest_metrics"):
                row["value"] = random.Random(i * 1000 + int(row["key"][1:])).random()
            elif table == "tags" and row["key"] == "mlflow.runName":
                row["value"] = f"train-{i}"
            clones.append(row)
    if clones:
        names = list(clones[0])
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [tuple(r[c] for c in names) for r in clones],
        )
conn.commit()
print(experiment)
"""


def fill_conveyor(url: str, n: int) -> None:
    """``n`` finished runs with the same values as MLflow's (each a function of run and key)."""
    import random

    from conveyor.store import schema
    from conveyor.store.metrics import pack
    from conveyor.store.registry import Registry

    now = time.time()
    runs, params, metrics, summaries = [], [], [], []
    for i in range(n):
        run_id = f"{i:032x}"
        started = now - (n - i)
        runs.append(
            {
                "id": run_id,
                "name": f"train-{i}",
                "status": "FINISHED",
                "command": ["python", "train.py"],
                "cwd": "/tmp/project",
                "started_at": started,
                "ended_at": started + 0.5,
                "seed": i,
                "host": "benchhost",
                "code": {},
                "environment": {},
                "experiment": "bench",
            }
        )
        for k in range(PARAMS):
            value = 0 if i == 0 else (i * 31 + k * 17) % 10
            params.append({"run_id": run_id, "key": f"p{k}", "value": value, "source": "code"})
        for k in range(METRICS):
            measured = 0.5 if i == 0 else random.Random(i * 1000 + k).random()
            metrics.append(
                {
                    "run_id": run_id,
                    "key": f"m{k}",
                    "seq": 0,
                    "count": 1,
                    "data": pack([(f"m{k}", measured, 0, now)]),
                }
            )
            summaries.append(
                {
                    "run_id": run_id,
                    "key": f"m{k}",
                    "count": 1,
                    "min": measured,
                    "max": measured,
                    "value": measured,
                    "step": 0,
                    "timestamp": now,
                }
            )
    with Registry(url) as registry, registry.transaction() as conn:
        conn.execute(schema.runs.insert(), runs)
        conn.execute(schema.params.insert(), params)
        conn.execute(schema.metric_chunks.insert(), metrics)
        conn.execute(schema.metric_summary.insert(), summaries)


@contextmanager
def conveyor_server(work: Path, n: int) -> Iterator[httpx.Client]:
    """A platform over a registry of ``n`` runs; yields a client logged in to its dashboard."""
    home = work / "conveyor"
    fill_conveyor(f"sqlite:///{home / 'registry.db'}", n)
    with platform_server(platform_env(home), work / "conveyor.log", 120) as addresses:
        token = (home / "platform" / "token").read_text().strip()
        with httpx.Client(base_url=addresses["api"], timeout=120) as client:
            assert client.post("/ui/login", data={"token": token}).status_code == 303
            yield client


def install_mlflow(work: Path) -> Path:
    venv = work / "mlflow-venv"
    uv = ROOT / ".tools" / "bin" / "uv"
    subprocess.run([str(uv), "venv", "-q", str(venv)], check=True, timeout=600)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--python", str(python), "mlflow"],
        check=True,
        timeout=1800,
    )
    return python


@contextmanager
def mlflow_server(
    work: Path, python: Path, n: int, timeout: float
) -> Iterator[tuple[httpx.Client, str]]:
    """MLflow's tracking server over its SQLite store of ``n`` runs; yields a client, experiment."""
    db = work / "mlflow.db"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    filled = subprocess.run(
        [str(python), "-c", MLFLOW_FILL, str(db), str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    experiment = filled.stdout.strip().splitlines()[-1]
    port = free_port()
    mlflow = python.parent / "mlflow"
    with (work / "mlflow.log").open("wb") as log:
        server = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"sqlite:///{db}",
                "--default-artifact-root",
                str(work / "mlartifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:

            def healthy() -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.HTTPError:
                    return False

            until("the MLflow server", healthy, 300)
            yield client, experiment
    finally:
        server.terminate()
        server.wait(timeout=120)


def _timed(call: Callable[[], httpx.Response], check: Callable[[httpx.Response], bool]) -> float:
    """Milliseconds of one request; infinity if it took longer than the client's timeout."""
    start = time.perf_counter()
    try:
        answer = call()
    except httpx.TimeoutException:
        return math.inf
    elapsed = time.perf_counter() - start
    if answer.status_code != 200 or not check(answer):
        raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text[:300]}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mlflow-python", type=Path, help="a Python with mlflow installed")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give up on a request after this many s"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        work = Path(tmp)
        python = args.mlflow_python or install_mlflow(work)
        version = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        started = time.perf_counter()
        with (
            conveyor_server(work, args.runs) as ui,
            mlflow_server(work, python, args.runs, args.timeout) as (ml, experiment),
        ):
            built = time.perf_counter() - started

            def rows(page: httpx.Response) -> int:
                return page.text.count('name="run" value=')

            def search(max_results: int, **body: Any) -> Callable[[], httpx.Response]:
                request = {"experiment_ids": [experiment], "max_results": max_results, **body}
                return lambda: ml.post("/ajax-api/2.0/mlflow/runs/search", json=request)

            def listed(count: int) -> Callable[[httpx.Response], bool]:
                return lambda a: 0 < len(a.json().get("runs", [])) <= count

            def page(**params: str) -> Callable[[], httpx.Response]:
                return lambda: ui.get("/ui/runs", params=params)

            listings: list[tuple[str, dict[str, str], dict[str, Any]]] = [
                ("newest", {}, {"order_by": ["attributes.start_time DESC"]}),
                (
                    "search",
                    {"where": "metrics.m0 > 0.5 and params.p1 = 5"},
                    {"filter": "metrics.m0 > 0.5 and params.p1 = '5'"},
                ),
                ("by metric", {"sort": "metrics.m0"}, {"order_by": ["metrics.m0 DESC"]}),
            ]
            cases: list[tuple[str, str, Callable[[], httpx.Response], Callable[..., bool]]] = []
            for label, ours, theirs in listings:
                cases += [
                    (label, "Conveyor /ui/runs", page(**ours), lambda a: 0 < rows(a) <= PAGE),
                    (label, "MLflow runs/search, 25", search(25, **theirs), listed(25)),
                    (label, "MLflow runs/search, 100", search(100, **theirs), listed(100)),
                ]
            # warm-up (caches, connections); a listing that times out is not asked again
            slow = {i for i, case in enumerate(cases) if _timed(case[2], case[3]) == math.inf}
            # Both searches select the same runs.
            from conveyor.store.listing import RunFilter
            from conveyor.store.registry import Registry

            with Registry(f"sqlite:///{work / 'conveyor' / 'registry.db'}") as registry:
                ours_found = registry.list_runs_page(
                    limit=args.runs, only=RunFilter(where=str(listings[1][1]["where"]))
                ).runs
            matched = f"{len(ours_found):,} runs"
            try:
                theirs_found = search(50_000, **listings[1][2])().json().get("runs", [])
            except httpx.TimeoutException:
                matched += " (MLflow's answer not awaited)"
            else:
                if {r.id for r in ours_found} != {r["info"]["run_id"] for r in theirs_found}:
                    raise RuntimeError("the two searches selected different runs")
                matched += " in both (the same ones)"
            times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
            for _ in range(args.rounds):
                for i, (_label, _tool, call, check) in enumerate(cases):
                    times[i].append(math.inf if i in slow else _timed(call, check))

    print(f"\n{args.runs:,} runs x {PARAMS} params x {METRICS} metrics; MLflow {version}")
    print(f"{machine()}; load {os.getloadavg()[0]:.1f}; both stores built in {built:.0f} s")
    print(f"the search matches {matched}")
    print(f"median of {args.rounds} rounds, ms per whole HTTP request on loopback\n")
    print("| listing | server | ms | x Conveyor |")
    print("|---|---|---:|---:|")
    for i, (label, tool, _call, _check) in enumerate(cases):
        base = statistics.median(times[(i // 3) * 3])
        ms = statistics.median(times[i])
        if ms == math.inf:
            print(f"| {label} | {tool} | > {args.timeout * 1000:,.0f} (timed out) | - |")
        else:
            print(f"| {label} | {tool} | {ms:.1f} | {ms / base:.2f} |")


if __name__ == "__main__":
    main()
