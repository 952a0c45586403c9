"""``conveyor serve`` as a user runs it: a real process, workers, signals, refusals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from conveyor.models.base import Field, Signature
from conveyor.serving import ResolvedModel, ServeOptions
from conveyor.serving.server import bind_sockets, run_in_thread
from tests.waiting import eventually

from .conftest import TREE, Trained, wait_ready

pytestmark = pytest.mark.slow

CONVEYOR = [sys.executable, "-m", "conveyor"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "PROMETHEUS_"))}
    env.update({"CONVEYOR_HOME": str(tmp_path / "home"), **extra})
    return env


@dataclass
class Running:
    proc: subprocess.Popen[str]
    base: str


def _start(args: list[str], env: dict[str, str]) -> Running:
    proc = subprocess.Popen(
        [*CONVEYOR, "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the announcement, printed once listening
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if match is None:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"no announcement: {line!r}\n{err}")
    base = f"http://127.0.0.1:{match.group(1)}"
    wait_ready(base)
    return Running(proc, base)


def _stop(running: Running, signum: int) -> int:
    """Signal the server, wait for it to exit, close its pipes; returns the exit code."""
    running.proc.send_signal(signum)
    running.proc.communicate(timeout=60)
    return running.proc.returncode


@pytest.fixture
def two_workers(gbc: Trained, tmp_path: Path) -> Iterator[Running]:
    running = _start(
        [str(gbc.path), "--workers", "2", "--name", "gbc"],
        _env(tmp_path, CONVEYOR_TRUSTED_TYPES=TREE),
    )
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.communicate(timeout=30)


def test_two_workers_share_the_load_and_stop_gracefully(two_workers: Running, gbc: Trained) -> None:
    base = two_workers.base
    rows = gbc.x[:2].tolist()
    expected = gbc.estimator.predict(gbc.x[:2]).tolist()

    def client_session(_: int) -> list[int]:
        # Each session is one keep-alive connection, as a load generator's are.
        with httpx.Client(base_url=base) as client:
            out = []
            for _ in range(10):
                r = client.post("/invocations", json={"instances": rows})
                assert r.status_code == 200, r.text
                out.extend(r.json()["predictions"])
            return out

    with ThreadPoolExecutor(8) as pool:
        for predictions in pool.map(client_session, range(16)):
            assert predictions == expected * 10

    metrics = httpx.get(f"{base}/metrics").text
    per_worker = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'conveyor_worker_requests_total\{worker="(\d)"\} ([\d.]+)', metrics)
    }
    assert set(per_worker) == {"0", "1"}, metrics
    dealt = [
        float(m.group(1))
        for m in re.finditer(r'conveyor_worker_connections_total\{worker="\d"\} ([\d.]+)', metrics)
    ]
    assert len(dealt) == 2
    assert abs(dealt[0] - dealt[1]) <= 1  # connections are dealt round-robin
    assert sum(per_worker.values()) >= 160
    assert 'conveyor_requests_total{model="gbc",protocol="mlflow",status="200"} 160.0' in metrics

    assert _stop(two_workers, signal.SIGTERM) == 0


def test_pickle_needs_trust_on_the_command_line(tmp_path: Path, gbc: Trained) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(gbc.estimator, path)
    result = subprocess.run(
        [*CONVEYOR, "serve", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "runs any code" in result.stderr
    assert "--trust" in result.stderr
    assert "Traceback" not in result.stderr

    running = _start([str(path), "--trust"], _env(tmp_path))
    try:
        r = httpx.post(f"{running.base}/predict", json=[{"x": gbc.x[0].tolist()}])
        assert r.json()[0]["label"] == int(gbc.estimator.predict(gbc.x[:1])[0])
    finally:
        assert _stop(running, signal.SIGINT) == 0


def test_untrusted_skops_types_and_unknown_uris_are_clear_errors(
    tmp_path: Path, gbc: Trained
) -> None:
    for args, message in [
        ([str(gbc.path)], f"CONVEYOR_TRUSTED_TYPES={TREE}"),
        (["run:01abc/model"], "no run with id 01abc"),
        (["run:nothing"], "the form is run:<run-id>/<model-name>"),
        ([str(tmp_path / "missing.skops")], "no such model file"),
        ([str(tmp_path)], "no MLmodel file"),
    ]:
        result = subprocess.run(
            [*CONVEYOR, "serve", *args, "--port", "0"],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=120,
            check=False,
        )
        assert result.returncode in (1, 2), result  # 2: the URI itself is malformed
        assert message in result.stderr
        assert "Traceback" not in result.stderr


class SlowModel:
    """A model whose predict waits for the test to release it."""

    format = "test"
    signature = Signature(
        inputs=(Field("v", "float64"),), outputs=(Field("prediction", "float64"),)
    )

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(30)
        return {"prediction": np.asarray(batch["v"]) + 1}


def test_shutdown_finishes_in_flight_requests() -> None:
    model = SlowModel()
    resolved = ResolvedModel(model=model, name="slow", source="test", digest="blake3:" + "0" * 64)
    sock = bind_sockets("127.0.0.1", 0, 1)[0]
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    _, stop = run_in_thread(resolved, ServeOptions(graceful_timeout=20), sock)
    wait_ready(base)
    with ThreadPoolExecutor(2) as pool:
        answer = pool.submit(httpx.post, f"{base}/predict", json=[{"v": 1.0}], timeout=30)
        assert model.entered.wait(30)
        stopping = pool.submit(stop)  # shutdown begins while the request is in flight
        model.release.set()
        r = answer.result(timeout=30)
        stopping.result(timeout=30)
    assert r.status_code == 200
    assert r.json() == [{"prediction": 2.0}]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/v2/health/ready", timeout=2)


def test_serve_a_model_saved_by_a_recorded_run(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(
        "import conveyor\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "conveyor.save_model(LogisticRegression(max_iter=500).fit(X, y), 'model', example=X)\n"
    )
    env = _env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        [*CONVEYOR, "run", "--", "python", "train.py"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    listed = subprocess.run(
        [*CONVEYOR, "runs", "--json"], env=env, check=True, capture_output=True, text=True
    )
    import json

    run_id = json.loads(listed.stdout)[0]["id"]
    running = _start([f"run:{run_id[:8]}/model"], env)
    try:
        row = {
            "sepal length (cm)": 5.1,
            "sepal width (cm)": 3.5,
            "petal length (cm)": 1.4,
            "petal width (cm)": 0.2,
        }
        r = httpx.post(f"{running.base}/predict", json=[row])
        assert r.status_code == 200, r.text
        assert r.json()[0]["label"] == 0
        # Lineage: the response names the run that trained the model.
        assert r.headers["x-model-run-id"] == run_id
        assert r.headers["x-model-digest"].startswith("blake3:")
        assert "x-model-version" not in r.headers  # a run's model, not a registry version
    finally:
        assert _stop(running, signal.SIGTERM) == 0


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _in_flight(base: str) -> float:
    """Requests being processed by all workers, not counting this scrape itself."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r'^conveyor_requests_in_flight\{model="gbc"\} ([\d.]+)$', text, re.M)
    return float(match.group(1)) - 1 if match else 0.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _await_refusal(base: str) -> None:
    """New connections are refused once the server is stopping: never accepted, then dropped."""

    def refused() -> bool:
        try:
            r = httpx.get(f"{base}/v2/health/live", timeout=30)  # a fresh connection each time
        except httpx.ConnectError:
            return True
        assert r.status_code == 200  # answered before the signal reached the server
        return False

    eventually(refused, what="the server to stop accepting connections", timeout=30, interval=0)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc")
def test_sigterm_under_load_answers_every_accepted_request_and_leaves_no_worker(
    gbc: Trained, tmp_path: Path
) -> None:
    clients, rounds = 8, 2
    # Each batch waits a second for company, so requests stay in flight long
    # enough to be caught there by the signal.
    running = _start(
        [str(gbc.path), "--workers", "2", "--name", "gbc", "--batch-wait-ms", "1000"],
        _env(tmp_path, CONVEYOR_TRUSTED_TYPES=TREE),
    )
    workers = _children(running.proc.pid)
    assert len(workers) == 2
    rows = gbc.x[:3].tolist()
    expected = gbc.estimator.predict(gbc.x[:3]).tolist()
    last_round = threading.Barrier(clients + 1)

    def session(_: int) -> list[tuple[int, Any, str]]:
        answers = []
        with httpx.Client(base_url=running.base, timeout=60) as client:
            for i in range(rounds + 1):
                if i == rounds:
                    last_round.wait(timeout=60)  # the final requests go out together
                r = client.post("/invocations", json={"instances": rows})
                answers.append((r.status_code, r.json(), r.headers.get("connection", "")))
        return answers

    try:
        with ThreadPoolExecutor(clients) as pool:
            sessions = [pool.submit(session, n) for n in range(clients)]
            last_round.wait(timeout=60)
            # Every final request has been read by a worker and is waiting in its batcher.
            eventually(
                lambda: _in_flight(running.base) >= clients,
                what="the final requests to arrive",
                timeout=30,
                interval=0.01,
            )
            running.proc.send_signal(signal.SIGTERM)
            _await_refusal(running.base)
            answers = [s.result(timeout=90) for s in sessions]
        running.proc.communicate(timeout=60)
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.communicate(timeout=30)

    for answer in answers:
        assert [(status, body) for status, body, _ in answer] == [
            (200, {"predictions": expected})
        ] * (rounds + 1)
        assert answer[-1][2] == "close"  # answered during shutdown: the connection ends cleanly
    assert running.proc.returncode == 0
    assert all(_gone(pid) for pid in workers), "a worker outlived the server"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.base}/v2/health/live", timeout=5)


def test_strict_inputs_on_the_command_line(churn: Trained, tmp_path: Path) -> None:
    running = _start([str(churn.path), "--workers", "2", "--strict-inputs"], _env(tmp_path))
    try:
        row = {"customer_id": "c-17", "age": 41, "income": 52_000.0}
        for _ in range(4):  # whichever worker answers
            r = httpx.post(f"{running.base}/predict", json=[row])
            assert r.status_code == 400
            assert r.json()["details"][0]["field"] == "customer_id"
    finally:
        assert _stop(running, signal.SIGTERM) == 0
