"""Model-serving benchmark: conveyor serve against MLflow, BentoML and a bare hello-world floor.

    python -m bench.serving [--duration 10] [--rounds 3] [--connections 32] [--only conveyor,floor]

Same model (GradientBoostingClassifier, 100 trees, 20 features), same
machine, same load generator (wrk, 32 keep-alive connections), single-row
and 100-row requests. MLflow and BentoML run from their own virtual
environments, never from the project's:

    uv venv /tmp/bench-mlflow && uv pip install --python /tmp/bench-mlflow/bin/python \\
        mlflow scikit-learn==<the project's version>
    uv venv /tmp/bench-bento && uv pip install --python /tmp/bench-bento/bin/python \\
        bentoml scikit-learn==<the project's version>

(override the locations with BENCH_MLFLOW_PYTHON / BENCH_BENTOML_PYTHON); a
contender whose environment is missing is skipped with that hint. Prints a
Markdown report (requests/s, p50, p99, ratios, Conveyor's per-worker request
counts and memory) and writes it to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import _wrk

ROOT = Path(__file__).resolve().parents[2]
LUA = Path(__file__).with_name("report.lua")
TREE = "sklearn.tree._tree.Tree"
WORKERS = 2
READY_DEADLINE = 180.0


@dataclass
class Result:
    contender: str
    rows: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    notes: str = ""
    #: Server CPU time (user + system, every process of the server) per request, in µs:
    #: unlike requests/s, barely moved by other load on a shared machine.
    cpu_us: float = 0.0


@dataclass
class Contender:
    name: str
    command: list[str]
    ready_url: str
    score_path: str
    body: Callable[[list[list[float]]], Any]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float = READY_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {deadline:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wrk(url: str, body_file: Path, seconds: int, connections: int) -> dict[str, Any]:
    env = {"BENCH_BODY_FILE": str(body_file)}
    return _wrk.run(url, LUA, seconds=seconds, connections=connections, threads=2, env=env)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every process under it."""
    ticks = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        pids.extend(int(c) for c in children)
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_counts(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'conveyor_worker_requests_total\{worker="(\d+)"\} ([\d.e+]+)', text)
    }


def batch_stats(base: str) -> tuple[float, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text

    def value(name: str) -> float:
        m = re.search(rf"^{name}\{{[^}}]*\}} ([\d.e+]+)$", text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    return value("conveyor_batch_requests_sum"), value("conveyor_batch_requests_count")


def memory(pid: int) -> list[tuple[int, float, float]]:
    """(pid, RSS MiB, PSS MiB) of every process in the tree under ``pid``."""
    pids = [pid]
    out: list[tuple[int, float, float]] = []
    while pids:
        p = pids.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        kb = {k: int(v) for k, v in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.MULTILINE)}
        out.append((p, kb.get("Rss", 0) / 1024, kb.get("Pss", 0) / 1024))
        pids.extend(int(c) for c in children)
    return out


def prepare(work: Path) -> tuple[Any, Path, Path]:
    """Train the model once; save it as .skops (Conveyor) and joblib (the others)."""
    import joblib
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    x, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    model = GradientBoostingClassifier(random_state=0).fit(x, y)
    save(model, work / "gbc.skops")
    joblib.dump(model, work / "gbc.joblib")
    print(
        f"model: GradientBoostingClassifier(100 trees), 20 features; sklearn {sklearn.__version__}"
    )
    return x, work / "gbc.skops", work / "gbc.joblib"


def mlflow_model(python: str, joblib_path: Path, work: Path) -> Path:
    target = work / "mlflow-model"
    script = textwrap.dedent(
        f"""
        import joblib, mlflow.sklearn, numpy as np
        from mlflow.models import infer_signature
        m = joblib.load({str(joblib_path)!r})
        x = np.random.default_rng(0).normal(size=(5, 20))
        mlflow.sklearn.save_model(
            m, {str(target)!r}, signature=infer_signature(x, m.predict(x)),
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
        """
    )
    done = subprocess.run(
        [python, "-c", script], check=False, timeout=300, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"saving the MLflow model failed:\n{done.stderr[-2000:]}")
    return target


BENTO_SERVICE = """
import os

import bentoml
import joblib
import numpy as np

BATCH = os.environ.get("BENCH_BATCHABLE") == "1"


@bentoml.service(workers={workers}, traffic={{"timeout": 60}})
class Gbc:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(batchable=BATCH, max_batch_size=256, max_latency_ms=1000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)
"""


def contenders(
    work: Path, skops: Path, joblib_path: Path, only: set[str] | None, baseline: Path | None = None
) -> tuple[list[Contender], list[str]]:
    notes: list[str] = []
    found: list[Contender] = []
    quiet = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}

    def want(name: str) -> bool:
        return only is None or name.split(" ", maxsplit=1)[0] in only

    port = free_port()
    if want("floor"):
        found.append(
            Contender(
                "floor (hello world)",
                [sys.executable, "-m", "bench.serving.floor_app", str(port), str(WORKERS)],
                f"http://127.0.0.1:{port}/",
                "/",
                lambda rows: {"inputs": rows},
                cwd=ROOT,
            )
        )
    conveyor = [
        str(Path(sys.executable).with_name("conveyor")), "serve", str(skops), "--name", "gbc",
        "--workers", str(WORKERS),
    ]  # fmt: skip

    # With --baseline-src, the same server from another source tree runs next to this one.
    def v2_body(rows: list[list[float]]) -> Any:
        return {
            "inputs": [{"name": "x", "shape": [len(rows), 20], "datatype": "FP64", "data": rows}]
        }

    builds: list[tuple[str, dict[str, str]]] = [("conveyor", {})]
    if baseline is not None:
        builds.insert(0, ("conveyor (baseline)", {"PYTHONPATH": str(baseline)}))
    if want("conveyor"):
        for label, extra in builds:
            p = free_port()
            found.append(
                Contender(
                    f"{label} /invocations",
                    [*conveyor, "--port", str(p)],
                    f"http://127.0.0.1:{p}/v2/health/ready",
                    "/invocations",
                    lambda rows: {"inputs": rows},
                    env={"CONVEYOR_TRUSTED_TYPES": TREE, **extra},
                )
            )
        for label, extra in builds:
            p = free_port()
            found.append(
                Contender(
                    f"{label} /v2 infer",
                    [*conveyor, "--port", str(p)],
                    f"http://127.0.0.1:{p}/v2/health/ready",
                    "/v2/models/gbc/infer",
                    v2_body,
                    env={"CONVEYOR_TRUSTED_TYPES": TREE, **extra},
                )
            )
    mlflow_python = os.environ.get("BENCH_MLFLOW_PYTHON", "/tmp/bench-mlflow/bin/python")
    if want("mlflow"):
        model_dir = None
        if Path(mlflow_python).exists():
            try:
                model_dir = mlflow_model(mlflow_python, joblib_path, work)
            except (OSError, RuntimeError) as exc:
                notes.append(f"mlflow skipped: {exc}")
        if model_dir is not None:
            p = free_port()
            found.append(
                Contender(
                    "mlflow models serve",
                    [str(Path(mlflow_python).with_name("mlflow")), "models", "serve", "-m",
                     str(model_dir), "--env-manager", "local", "-w", str(WORKERS),
                     "-p", str(p), "-h", "127.0.0.1"],
                    f"http://127.0.0.1:{p}/ping",
                    "/invocations",
                    lambda rows: {"inputs": rows},
                    # mlflow runs `uvicorn` by name: its own environment's bin goes first.
                    env={**quiet, "PATH": f"{Path(mlflow_python).parent}:{os.environ['PATH']}"},
                )
            )  # fmt: skip
        elif not Path(mlflow_python).exists():
            notes.append(f"mlflow skipped: {mlflow_python} missing (see this module's docstring)")
    bento_python = os.environ.get("BENCH_BENTOML_PYTHON", "/tmp/bench-bento/bin/python")
    if want("bentoml"):
        if Path(bento_python).exists():
            (work / "service.py").write_text(BENTO_SERVICE.format(workers=WORKERS))
            for batching in (True, False):
                p = free_port()
                found.append(
                    Contender(
                        f"bentoml serve ({'adaptive batching' if batching else 'no batching'})",
                        [str(Path(bento_python).with_name("bentoml")), "serve", "service:Gbc",
                         "--port", str(p), "--host", "127.0.0.1"],
                        f"http://127.0.0.1:{p}/readyz",
                        "/predict",
                        lambda rows: {"x": rows},
                        env={**quiet, "BENCH_MODEL": str(joblib_path),
                             "BENCH_BATCHABLE": "1" if batching else "0"},
                        cwd=work,
                    )
                )  # fmt: skip
        else:
            notes.append(f"bentoml skipped: {bento_python} missing (see this module's docstring)")
    return found, notes


@dataclass
class Running:
    """A contender's server, started once and measured in every round."""

    contender: Contender
    proc: subprocess.Popen[bytes]
    origin: str
    bodies: dict[int, Path]


def start(c: Contender, x: Any, work: Path, sizes: list[int]) -> Running:
    """Start ``c``'s server, wait until it answers, and check one request of each size."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "PROMETHEUS_"))}
    env.update(c.env)
    proc = subprocess.Popen(
        c.command,
        cwd=c.cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready(c.ready_url, proc)
        origin = "/".join(c.ready_url.split("/", 3)[:3])
        bodies: dict[int, Path] = {}
        for rows in sizes:
            if c.name.startswith("floor") and rows != 1:
                continue
            body = work / f"body-{abs(hash(c.name))}-{rows}.json"
            body.write_bytes(json.dumps(c.body(x[:rows].tolist())).encode())
            check = httpx.post(
                origin + c.score_path,
                content=body.read_bytes(),
                headers={"content-type": "application/json"},
                timeout=60,
            )
            if check.status_code != 200:
                raise RuntimeError(
                    f"{c.name}: probe answered {check.status_code}: {check.text[:300]}"
                )
            bodies[rows] = body
    except BaseException:
        stop(proc)
        raise
    return Running(c, proc, origin, bodies)


def measure_once(r: Running, seconds: int, connections: int) -> list[Result]:
    """One measured wrk run per request size (after a 2 s warm-up)."""
    c, origin = r.contender, r.origin
    results: list[Result] = []
    for rows, body in r.bodies.items():
        wrk(origin + c.score_path, body, 2, connections)  # warm-up
        before = worker_counts(origin) if c.name.startswith("conveyor") else {}
        batches_before = batch_stats(origin) if before else (0.0, 0.0)
        cpu_before = tree_cpu(r.proc.pid)
        data = wrk(origin + c.score_path, body, seconds, connections)
        cpu = tree_cpu(r.proc.pid) - cpu_before
        note = ""
        if before:
            after = worker_counts(origin)
            spread = {w: int(after.get(w, 0) - before.get(w, 0)) for w in sorted(after)}
            reqs, calls = batch_stats(origin)
            merged = (reqs - batches_before[0]) / max(1.0, calls - batches_before[1])
            note = f"per worker {spread}; {merged:.1f} requests per predict call"
        results.append(
            Result(
                c.name,
                rows,
                data["requests"] / (data["duration_us"] / 1e6),
                data["p50_us"] / 1000,
                data["p99_us"] / 1000,
                data["status_errors"] + data["socket_errors"],
                note,
                cpu * 1e6 / max(1, data["requests"]),
            )
        )
        print(f"  {c.name:<40} rows={rows:<4} {results[-1].requests_per_s:8.0f} req/s "
              f"p50 {results[-1].p50_ms:7.1f} ms  p99 {results[-1].p99_ms:7.1f} ms  "
              f"CPU {results[-1].cpu_us:5.0f} us/request  {note}",
              flush=True)  # fmt: skip
    return results


def median_result(runs: list[Result]) -> Result:
    """Per figure, the median over the rounds; the notes of the median round by requests/s."""
    middle = sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]
    return Result(
        middle.contender,
        middle.rows,
        statistics.median(r.requests_per_s for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
        middle.notes,
        statistics.median(r.cpu_us for r in runs),
    )


def floor_ratios(rounds: list[list[Result]]) -> dict[str, list[float]]:
    """Per Conveyor contender, its 1-row requests/s over the floor's in the same round."""
    ratios: dict[str, list[float]] = {}
    for results in rounds:
        by = {(r.contender, r.rows): r for r in results}
        floor = by.get(("floor (hello world)", 1))
        if floor is None or not floor.requests_per_s:
            continue
        for r in results:
            if r.rows == 1 and r.contender.startswith("conveyor"):
                ratios.setdefault(r.contender, []).append(r.requests_per_s / floor.requests_per_s)
    return ratios


def report(
    results: list[Result],
    notes: list[str],
    seconds: int,
    connections: int,
    rounds: int = 1,
    per_round_floor: dict[str, list[float]] | None = None,
) -> str:
    lines = [
        f"wrk, {connections} connections, 2 threads, {seconds} s per run after a 2 s warm-up; "
        f"{WORKERS} workers everywhere; GradientBoostingClassifier (100 trees, 20 features). "
        f"Every server measured in turn, {rounds} round(s); each figure is the median over the "
        "rounds.",
        "",
        "| server | rows/request | requests/s | rows/s | p50 ms | p99 ms | errors "
        "| server CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.contender} | {r.rows} | {r.requests_per_s:,.0f} "
            f"| {r.requests_per_s * r.rows:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
            f"| {r.cpu_us:,.0f} |"
        )
    by = {(r.contender, r.rows): r for r in results}
    ours = "conveyor /invocations"
    lines += [
        "",
        "Ratios (Conveyor /invocations over the other; throughput, and p99 other/ours):",
        "",
    ]
    for other in [r.contender for r in results if r.rows == 1 and r.contender != ours]:
        for rows in (1, 100):
            a, b = by.get((ours, rows)), by.get((other, rows))
            if a and b and b.requests_per_s:
                lines.append(
                    f"- vs {other}, {rows} row(s): {a.requests_per_s / b.requests_per_s:.2f}x "
                    f"throughput, p99 {b.p99_ms / max(a.p99_ms, 1e-9):.2f}x lower, "
                    f"server CPU per request {b.cpu_us / max(a.cpu_us, 1e-9):.2f}x (theirs/ours)"
                )
    floor = by.get(("floor (hello world)", 1))
    if floor is not None:
        lines += [
            "",
            "Against the floor, 1 row (requests/s ours/floor; server CPU per request floor/ours):",
            "",
        ]
        for r in results:
            if r.rows != 1 or not r.contender.startswith("conveyor"):
                continue
            line = (
                f"- {r.contender}: {r.requests_per_s / floor.requests_per_s:.2f}x throughput, "
                f"{floor.cpu_us / max(r.cpu_us, 1e-9):.2f}x by CPU per request"
            )
            same_round = (per_round_floor or {}).get(r.contender)
            if same_round and len(same_round) > 1:
                line += (
                    "; throughput over the floor's in the same round: median "
                    f"{statistics.median(same_round):.2f}x, range "
                    f"{min(same_round):.2f}-{max(same_round):.2f}x"
                )
            lines.append(line)
    extra = [f"- {r.contender}, {r.rows} row(s): {r.notes}" for r in results if r.notes]
    if extra or notes:
        lines += ["", *extra, *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (1-120)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every server this many times in turn and report medians (1-20)",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated: floor,conveyor,mlflow,bentoml"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the Markdown report here"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also serve from this source tree (e.g. `git archive <ref> src | tar -x -C DIR`, "
        "then DIR/src) to compare before and after in one run",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed; on Debian/Ubuntu: sudo apt-get install -y wrk", file=sys.stderr
        )
        return 2
    seconds = max(1, min(120, args.duration))
    args.rounds = max(1, min(20, args.rounds))
    only = set(args.only.split(",")) if args.only else None
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-serving-"))
    try:
        x, skops, joblib_path = prepare(work)
        found, notes = contenders(work, skops, joblib_path, only, args.baseline_src)
        running: list[Running] = []
        try:
            for c in found:
                try:
                    running.append(start(c, x, work, [1, 100]))
                except (RuntimeError, subprocess.SubprocessError, httpx.HTTPError) as exc:
                    notes.append(f"{c.name}: failed: {exc}")
                    print(f"  {c.name}: failed: {exc}", flush=True)
            rounds: list[list[Result]] = []
            for index in range(args.rounds):
                print(f"round {index + 1} of {args.rounds}:", flush=True)
                rounds.append(
                    [res for r in running for res in measure_once(r, seconds, args.connections)]
                )
            for r in running:
                if r.contender.name.startswith("conveyor"):
                    mem = memory(r.proc.pid)
                    shown = ", ".join(f"RSS {rss:.0f} / PSS {pss:.0f} MiB" for _, rss, pss in mem)
                    notes.append(f"{r.contender.name} memory (supervisor, then workers): {shown}")
        finally:
            for r in running:
                stop(r.proc)
        by_key: dict[tuple[str, int], list[Result]] = {}
        for rnd in rounds:
            for res in rnd:
                by_key.setdefault((res.contender, res.rows), []).append(res)
        results = [median_result(runs) for runs in by_key.values()]
        text = report(results, notes, seconds, args.connections, args.rounds, floor_ratios(rounds))
        print()
        print(text)
        if args.out:
            args.out.write_text(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
