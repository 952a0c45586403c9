"""Autoscaling: a step load to enough instances, back in after it, and cold starts from zero.

    python -m bench.platform.autoscale [--rounds 3] [--clients 8]

One real platform (`conveyor server`) in a temporary home.

* step load: the platform tests' stdlib app (``GET /sleep?s=0.2``) with
  ``target-ongoing-requests: 2``, ``max-instances: 4``, breach 2 s, cool-down
  5 s; ``--clients`` threads start sending at once (each at most 2,000
  requests): the time from the first request to 4 instances running; then one
  client keeps going while the app scales back in to 1; every answer that is
  not 200 counts as failed.
* scale from zero: a scikit-learn GradientBoosting model app (skops) and the
  stdlib app with ``min-instances: 0``, ``idle-period: 1s``: once the app has
  no instance, the latency of the next request (it starts an instance, waits
  for its health check and is answered), the part of it the instance took to
  start (the ``scaled 0 -> 1`` event to its ``running`` event), a warm request,
  and the same model started by hand with ``conveyor serve``. The model app
  runs twice: with warm starts (the default: a spare that loaded the model
  waits, docs/autoscaling.md) and on a second platform with ``CONVEYOR_PREFORK=0``.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.platform._control import conveyor, running_platform, until

HELLO = Path(__file__).parents[2] / "tests" / "platform" / "apps" / "hello.py"
#: Seconds between an app reaching zero and the request that wakes it.
PAUSE = 5.0


def _client(env: dict[str, str]) -> Any:
    from conveyor.cli.client import PlatformClient
    from conveyor.config import Settings

    return PlatformClient(Settings.from_env(env), timeout=60)


def _status(url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def _hello(work: Path, name: str, policy: str) -> Path:
    folder = work / name
    folder.mkdir()
    shutil.copy(HELLO, folder / "hello.py")
    (folder / "conveyor.yml").write_text(
        f"applications:\n  - name: {name}\n    command: python hello.py\n    instances: 1\n"
        "    health-check: {type: http, endpoint: /health, timeout: 60}\n"
        f"    autoscaling: {policy}\n"
    )
    return folder


def step_load(work: Path, env: dict[str, str], router: str, clients: int) -> list[str]:
    api = _client(env)
    policy = "{max-instances: 4, target-ongoing-requests: 2, breach-duration: 2s, cool-down: 5s}"
    conveyor(env, _hello(work, "step", policy), "push")
    url = f"{router}/step/sleep?s=0.2"
    statuses: Counter[int] = Counter()
    stop, light = threading.Event(), threading.Event()

    def load(index: int) -> None:
        for _ in range(2_000):
            if stop.is_set() or (index > 0 and light.is_set()):
                return
            statuses[_status(url)] += 1

    def running() -> int:
        return int(api.call("GET", "/v1/apps/step")["running"])

    workers = [threading.Thread(target=load, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    until("4 instances", lambda: running() == 4, 300)
    out = time.perf_counter() - started
    light.set()  # one client keeps sending while the app scales back in
    began_in = time.perf_counter()
    until("back to 1 instance", lambda: api.call("GET", "/v1/apps/step")["instances"] == 1, 300)
    back = time.perf_counter() - began_in
    stop.set()
    for worker in workers:
        worker.join()
    events = [e for e in api.call("GET", "/v1/apps/step/events?limit=50") if e["kind"] == "scaled"]
    reasons = [e["details"].get("reason", "") for e in events]
    total = sum(statuses.values())
    failed = total - statuses[200]
    return [
        f"| step load ({clients} clients) → 4 instances running | {out:.2f} s | "
        "breach 2 s + starts |",
        f"| load down to 1 client → back to 1 instance | {back:.2f} s | breach 2 s + cool-down |",
        f"| requests during both / failed | {total:,} / {failed} | goal 0 failed |",
        f"| decisions | {'; '.join(reasons)} | |",
    ]


def _model(work: Path) -> Path:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    x, y = make_classification(n_samples=500, n_features=20, random_state=0)
    model = GradientBoostingClassifier(random_state=0).fit(x, y)
    folder = work / "gb"
    folder.mkdir()
    save(model, folder / "gb.skops", x[:5])
    (folder / "conveyor.yml").write_text(
        "applications:\n  - name: gb\n    model: gb.skops\n    instances: 1\n"
        "    autoscaling: {min-instances: 0, max-instances: 1, idle-period: 1s}\n"
    )
    return folder


RECORD = json.dumps([{"x": [0.0] * 20}]).encode()
GB = "scikit-learn model app (GradientBoosting, skops)"


def cold_starts(
    work: Path, env: dict[str, str], router: str, rounds: int, *, prefork: bool = True
) -> list[str]:
    api = _client(env)
    warmth = "warm start (spare)" if prefork else "CONVEYOR_PREFORK=0"
    apps = [(f"{GB}, {warmth}", "gb", _model(work), "/predict")]
    if prefork:
        apps.append(
            (
                "stdlib app (tests' hello.py)",
                "zero",
                _hello(work, "zero", "{min-instances: 0, max-instances: 1, idle-period: 1s}"),
                "/",
            )
        )
    rows = []
    for label, name, folder, path in apps:
        conveyor(env, folder, "push")
        url = f"{router}/{name}{path}"
        body = RECORD if name == "gb" else None
        cold, warm, start, failed = [], [], [], 0
        for _ in range(rounds):
            until(f"{name} at zero", lambda: api.call("GET", f"/v1/apps/{name}")["running"] == 0)  # noqa: B023
            # Past the instance's exit: a spare refilled when it started has loaded by now.
            time.sleep(PAUSE)
            began = time.perf_counter()
            failed += _status(url, body) != 200
            cold.append(time.perf_counter() - began)
            began = time.perf_counter()
            failed += _status(url, body) != 200
            warm.append(time.perf_counter() - began)
            start.append(_instance_start(api, name))
        c, w = statistics.median(cold) * 1000, statistics.median(warm) * 1000
        s = statistics.median(start) * 1000
        rows.append(
            f"| {label} | {c:.0f} | {max(cold) * 1000:.0f} | {s:.0f} | {w:.1f} | {failed} |"
        )
    if prefork:
        model = work / "gb" / "gb.skops"
        by_hand = statistics.median(_serve_by_hand(model, RECORD) for _ in range(2))
        rows.append(
            f"| the same model, `conveyor serve` started by hand → first /predict | "
            f"{by_hand * 1000:.0f} | | | | |"
        )
    return rows


def _instance_start(api: Any, name: str) -> float:
    """Seconds from the latest ``scaled 0 -> 1`` to the instance passing its health check."""
    events = api.call("GET", f"/v1/apps/{name}/events?limit=20")
    woke = [e["at"] for e in events if e["kind"] == "scaled" and e["details"].get("previous") == 0]
    up = [e["at"] for e in events if e["kind"] == "running" and woke and e["at"] >= woke[-1]]
    return float(up[0] - woke[-1]) if up else float("nan")


def _serve_by_hand(model: Path, record: bytes) -> float:
    """Seconds from starting ``conveyor serve`` to its first answer to /predict."""
    from bench.platform._control import answers, free_port

    port = free_port()
    began = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CONVEYOR_TRUSTED_TYPES": "sklearn.tree._tree.Tree"},
    )
    try:
        until("conveyor serve", lambda: answers(f"http://127.0.0.1:{port}/predict", record), 120)
        return time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-autoscale-"))
    cold = Path(tempfile.mkdtemp(prefix="bench-autoscale-cold-"))
    try:
        with running_platform(work) as (env, router):
            steps = step_load(work, env, router, args.clients)
            colds = cold_starts(work, env, router, args.rounds)
        with running_platform(cold, {"CONVEYOR_PREFORK": "0"}) as (env, router):
            colds[1:1] = cold_starts(cold, env, router, args.rounds, prefork=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cold, ignore_errors=True)
    print("\n| step load | figure | made of |\n|---|---|---|")
    print("\n".join(steps))
    print(f"\n{args.rounds} rounds, medians\n")
    print("| scale from zero | cold ms | max ms | instance start ms | warm ms | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(colds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
