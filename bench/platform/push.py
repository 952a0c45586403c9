"""Push: cold and cached `conveyor push` against plain `uv pip install` and `mlflow models serve`.

    python -m bench.platform.push [--rounds 3]

Everything runs offline (UV_OFFLINE=1) from the machine's uv cache, so the
only network traffic is on loopback; the packages must be in that cache
(`make sync` puts them there). One real platform (`conveyor server`) in a
temporary home. Measured, each `--rounds` times, medians reported:

* plain: `uv venv` + `uv pip install -r requirements.txt` (and the same with
  `--compile-bytecode`, which staging does) into a fresh folder;
* cold push: `conveyor push` of a FastAPI + scikit-learn app with no cached
  environment, until the first request through the router succeeds;
* cached push: the same app with one source line changed (rolling onto a new
  revision), until the first request answered by the new revision;
* model push: a GradientBoosting model app, until /predict answers through
  the router, against `mlflow models serve` of the same model until
  /invocations answers. MLflow runs from its own venv (BENCH_MLFLOW_PYTHON,
  default /tmp/bench-mlflow/bin/python; see bench/serving for how to make
  it); without it that row is skipped. MLflow is started with
  `--env-manager local` (its own environment, nothing built): its
  environment-building managers (virtualenv, uv) resolve the model's
  requirements against PyPI, which a benchmark here must not reach (with
  UV_OFFLINE=1 its uv resolution fails), so this is MLflow's fastest start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

from bench.platform._control import (
    BIN,
    DEADLINE,
    answers,
    conveyor,
    free_port,
    running_platform,
    until,
)

APP = """
import sklearn  # the import that makes cold instance starts slow without bytecode
from fastapi import FastAPI

app = FastAPI()
GENERATION = {generation}


@app.get("/")
def root() -> dict[str, int]:
    return {{"generation": GENERATION}}
"""


def _pins() -> str:
    return "".join(f"{p}=={version(p)}\n" for p in ("fastapi", "uvicorn", "scikit-learn"))


def plain_install(
    work: Path, requirements: Path, *, compile_bytecode: bool, start: Path | None = None
) -> tuple[float, float]:
    """Seconds to install by hand, and then (with ``start``) for the app's first answer."""
    uv = shutil.which("uv", path=str(BIN)) or str(Path(".tools/bin/uv").resolve())
    target = work / f"plain-{time.monotonic_ns()}"
    env = {**os.environ, "UV_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("UV_COMPILE_BYTECODE", None)
    started = time.perf_counter()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(target)], check=True, env=env)
    extra = ["--compile-bytecode"] if compile_bytecode else []
    python = str(target / "bin" / "python")
    subprocess.run(
        [uv, "pip", "install", "-q", *extra, "--python", python, "-r", str(requirements)],
        check=True,
        env=env,
    )
    installed = time.perf_counter() - started
    first_answer = 0.0
    if start is not None:
        port = free_port()
        started = time.perf_counter()
        app = subprocess.Popen(
            [python, "-m", "uvicorn", "app:app", "--port", str(port)],
            cwd=start,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            until("the app started by hand", lambda: answers(f"http://127.0.0.1:{port}/"))
            first_answer = time.perf_counter() - started
        finally:
            app.terminate()
            app.wait(timeout=60)
    shutil.rmtree(target)
    return installed, first_answer


def write_app(folder: Path, name: str, generation: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP.format(generation=generation))
    (folder / "requirements.txt").write_text(_pins())
    manifest = folder / "conveyor.yml"
    manifest.write_text(
        textwrap.dedent(
            f"""\
            applications:
              - name: {name}
                command: python -m uvicorn app:app --port $PORT
                requirements: requirements.txt
                instances: 1
            """
        )
    )
    return manifest


def _staged_seconds(env: dict[str, str], folder: Path, name: str) -> float:
    """How long the platform spent staging ``name``'s last push (its "staged" event)."""
    events = json.loads(conveyor(env, folder, "app", name, "--json"))["events"]
    staged = [e for e in events if e["kind"] == "staged"]
    return float(staged[-1]["details"]["seconds"])


def push_until_answer(env: dict[str, str], folder: Path, url: str, generation: int) -> float:
    """Seconds from `conveyor push` to the first request answered by the new revision."""
    started = time.perf_counter()
    push = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "push"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    until(
        "the new revision",
        lambda: (
            answers(url, want=lambda b: b["generation"] == generation)
            or push.poll() not in (None, 0)
        ),
    )
    seconds = time.perf_counter() - started
    out, err = push.communicate(timeout=DEADLINE)
    if push.returncode != 0:
        raise RuntimeError(f"conveyor push failed:\n{out}{err}")
    return seconds


def mlflow_rows(work: Path, env: dict[str, str], rounds: int, router: str) -> list[str]:
    python = os.environ.get("BENCH_MLFLOW_PYTHON", "/tmp/bench-mlflow/bin/python")
    if not Path(python).exists():
        return [f"| mlflow models serve | skipped: no {python} (see bench/serving) | | |"]
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    x, y = make_classification(n_samples=500, n_features=20, random_state=0)
    model = GradientBoostingClassifier(random_state=0).fit(x, y)
    save(model, work / "gb.skops", x[:5])
    import joblib

    joblib.dump(model, work / "gb.joblib")
    target = work / "mlflow-model"
    subprocess.run(
        [
            python,
            "-c",
            "import joblib, mlflow.sklearn, numpy as np\n"
            "from mlflow.models import infer_signature\n"
            f"m = joblib.load({str(work / 'gb.joblib')!r})\n"
            "x = np.random.default_rng(0).normal(size=(5, 20))\n"
            f"mlflow.sklearn.save_model(m, {str(target)!r}, "
            "signature=infer_signature(x, m.predict(x)), "
            "skops_trusted_types=['sklearn.tree._tree.Tree'])\n",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    row = json.dumps({"inputs": np.zeros((1, 20)).tolist()}).encode()
    record = json.dumps([{"x": [0.0] * 20}]).encode()

    conveyor_times = []
    for n in range(rounds):
        name = f"gb{n}"
        folder = work / name
        folder.mkdir()
        shutil.copy(work / "gb.skops", folder / "gb.skops")
        (folder / "conveyor.yml").write_text(
            f"applications:\n  - name: {name}\n    model: gb.skops\n    instances: 1\n"
        )
        url = f"{router}/{name}/predict"
        started = time.perf_counter()
        conveyor(env, folder, "push")
        until("the model app", lambda: answers(url, record))  # noqa: B023
        conveyor_times.append(time.perf_counter() - started)
        conveyor(env, folder, "delete", name, "-y")

    def mlflow_start(env_root: Path) -> float:
        port = free_port()
        mlflow_env = {
            **os.environ,
            "UV_OFFLINE": "1",
            # MLflow runs `uvicorn` from PATH: its own environment's
            "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_ENV_ROOT": str(env_root),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        mlflow_env.pop("VIRTUAL_ENV", None)
        started = time.perf_counter()
        server = subprocess.Popen(
            [
                *(str(Path(python).parent / "mlflow"), "models", "serve", "-m", str(target)),
                *("--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"),
            ],
            env=mlflow_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            until(
                "mlflow models serve",
                lambda: (
                    answers(f"http://127.0.0.1:{port}/invocations", row)
                    or server.poll() is not None
                ),
            )
            if server.poll() is not None:
                raise RuntimeError("mlflow models serve exited before answering")
            return time.perf_counter() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)

    mlflow = [mlflow_start(work / "mlflow-envs") for _ in range(rounds)]
    conveyor_s, mlflow_s = statistics.median(conveyor_times), statistics.median(mlflow)
    return [
        f"| model app: `conveyor push` → first /predict via the router | {conveyor_s:.2f} "
        "| 1.00x | |",
        f"| `mlflow models serve --env-manager local` → first /invocations | {mlflow_s:.2f} "
        f"| {mlflow_s / conveyor_s:.2f}x | |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-push-"))
    try:
        with running_platform(work) as (env, router):
            lines = measure(work, env, router, args.rounds)
            if not args.no_mlflow:
                lines += mlflow_rows(work, env, args.rounds, router)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.rounds} rounds, medians; FastAPI + uvicorn + scikit-learn, offline uv cache\n")
    print("| what | seconds | ratio | goal |")
    print("|---|---:|---:|---|")
    print("\n".join(lines))
    return 0


def measure(work: Path, env: dict[str, str], router: str, rounds: int) -> list[str]:
    requirements = work / "requirements.txt"
    requirements.write_text(_pins())
    plain_install(work, requirements, compile_bytecode=False)  # warm uv's cache
    by_hand_app = work / "by-hand"
    write_app(by_hand_app, "by-hand", 1)
    plain, compiled, by_hand, warm_start = [], [], [], []
    for _ in range(rounds):
        plain.append(plain_install(work, requirements, compile_bytecode=False)[0])
        installed, started = plain_install(
            work, requirements, compile_bytecode=True, start=by_hand_app
        )
        compiled.append(installed)
        warm_start.append(started)
        by_hand.append(
            sum(plain_install(work, requirements, compile_bytecode=False, start=by_hand_app))
        )
    cold, cached, staging = [], [], []
    envs = work / "home" / "platform" / "droplets" / "envs"
    for n in range(rounds):
        name = f"cold{n}"
        folder = work / name
        write_app(folder, name, 1)
        shutil.rmtree(work / "home" / "platform" / "droplets" / "envs", ignore_errors=True)
        url = f"{router}/{name}/"
        cold.append(push_until_answer(env, folder, url, 1))
        staging.append(_staged_seconds(env, folder, name))
        # A cached droplet: its environment exists and its bytecode is compiled.
        until("the droplet's bytecode", lambda: any(envs.glob("*/.conveyor-compiled")))
        write_app(folder, name, 2)
        cached.append(push_until_answer(env, folder, url, 2))
        conveyor(env, folder, "delete", name, "-y")
    plain_s, compiled_s = statistics.median(plain), statistics.median(compiled)
    by_hand_s = statistics.median(by_hand)
    warm_start_s = statistics.median(warm_start)
    cold_s, cached_s = statistics.median(cold), statistics.median(cached)
    staging_s = statistics.median(staging)
    return [
        f"| `uv venv` + `uv pip install -r` (plain) | {plain_s:.2f} | 1.00x | |",
        f"| the same with `--compile-bytecode` | {compiled_s:.2f} "
        f"| {compiled_s / plain_s:.2f}x | |",
        f"| plain install + start the app by hand → first request | {by_hand_s:.2f} "
        f"| {by_hand_s / plain_s:.2f}x | |",
        f"| cold staging: resolve + environment + source snapshot | {staging_s:.2f} "
        f"| {staging_s / plain_s:.2f}x | ≤ 1.2x plain |",
        f"| cold `conveyor push` → first request | {cold_s:.2f} | {cold_s / plain_s:.2f}x "
        f"({cold_s / by_hand_s:.2f}x by hand) | |",
        f"| the app started by hand from a compiled environment → first request "
        f"| {warm_start_s:.2f} | | |",
        f"| cached `conveyor push` → new revision's first request | {cached_s:.2f} "
        f"| {cached_s / warm_start_s:.2f}x the app's own start | < 2 s |",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
