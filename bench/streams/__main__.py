"""Stream throughput: ``load-generator | transform | throughput`` per binder vs a hand-written loop.

    python -m bench.streams [--count 20000] [--batch 200] [--binders embedded,redis,rabbitmq]
                            [--pipeline transform|score]

``--pipeline score`` puts ``score`` (a GradientBoostingClassifier, 100 trees,
20 features, saved with skops) in the middle instead of ``transform``; the
direct loop then scores each batch with one ``predict_proba`` call.

Each side runs three processes (generate, transform, count) on one binder;
the Conveyor side is three ``python -m conveyor.streams.run`` apps, the
direct side (bench/streams/direct.py) does the same work with the same
client library (redis-py, pika) and the same guarantees. On both sides the
generator starts once the middle app is ready (model loaded) and both
consumers read their input (on Kafka: once their consumer group gave them
their partitions, which takes Tansu about 3 s), so the sink measures the
pipeline in steady state, not how fast it drains a backlog built while it was
joining. Messages/s is counted at the sink from its first to its last
message; latency is sink arrival minus the generator's timestamp (the
generator runs flat out, so it includes queueing). Needs Redis on 127.0.0.1:6379, RabbitMQ on
127.0.0.1:5672 (guest/guest) and NATS with JetStream on 127.0.0.1:4222; a
broker that does not answer is skipped. Kafka is the Tansu broker of the tests
(tests/tansu.py, started on a free port) unless BENCH_KAFKA_URL names one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from conveyor.config import Settings
from conveyor.streams.binders import open_binder

URLS = {
    "embedded": "",
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "nats": "nats://127.0.0.1:4222",
}
PORTS = {"redis": 6379, "rabbitmq": 5672, "nats": 4222}
#: Bound on one contender's run.
DEADLINE = float(os.environ.get("BENCH_DEADLINE", "300"))
TREE = "sklearn.tree._tree.Tree"
EXPRESSION = "{'seq': seq, 'key': key, 'amount2': amount * 2}"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def wait_ready(
    ready: Callable[[], bool], procs: list[subprocess.Popen[bytes]], what: str = "middle app"
) -> None:
    end = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > end or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"the pipeline's {what} did not become ready")
        time.sleep(0.05)


#: What a Conveyor consumer logs once it reads its input; on Kafka, once its group has given it
#: partitions (joining takes seconds there); elsewhere reading starts with the app.
JOINED = {"kafka": "reads partition(s)"}


def logged(logs: list[Path], text: str) -> bool:
    """Every log in ``logs`` says ``text``."""
    return all(p.exists() and text in p.read_text(errors="replace") for p in logs)


def show_logs(logs: list[Path]) -> None:
    for p in logs:
        if p.exists():
            tail = p.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {p.name}", *tail, sep="\n", file=sys.stderr)


def read_report(report: Path) -> dict[str, Any] | None:
    """The direct sink's summary, written once all messages arrived."""
    return orjson.loads(report.read_bytes()) if report.exists() else None


def read_logged(log: Path) -> dict[str, Any] | None:
    """The throughput sink's last summary line in its log (it logs one every N messages)."""
    if not log.exists():
        return None
    lines = [x for x in log.read_text(errors="replace").splitlines() if " throughput: {" in x]
    return orjson.loads(lines[-1].split(" throughput: ", 1)[1]) if lines else None


def wait_report(
    read: Callable[[], dict[str, Any] | None], count: int, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        data = read()
        if data is not None and data["count"] >= count:
            return data
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError("a process of the pipeline failed; see its output above")
        time.sleep(0.1)
    raise RuntimeError(f"not all {count} messages arrived within {DEADLINE:.0f}s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def train_model(path: Path) -> Path:
    """The serving benchmark's model: GradientBoostingClassifier, 100 trees, 20 features."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    x, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(20)])
    save(GradientBoostingClassifier(n_estimators=100, random_state=0).fit(frame, y), path, frame)
    return path


def score_alone(model: Path, batch: int, seconds: float = 3.0) -> tuple[float, float]:
    """Rows/s of the score app's process() in this process, and of bare predict_proba."""
    import numpy as np

    from conveyor.streams.apps.base import AppContext
    from conveyor.streams.apps.score import Score
    from conveyor.streams.catalogue import Role, app_spec
    from conveyor.streams.messages import Message

    settings = Settings.from_env({"CONVEYOR_TRUSTED_TYPES": TREE})
    options = app_spec("score", Role.PROCESSOR).resolve({"model": str(model)})
    app = Score(AppContext(options, "bench", "score", settings))
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(batch, 20))
    messages = [Message({f"x{i}": float(v) for i, v in enumerate(r)}, {}) for r in rows]
    est = app.model.estimator  # type: ignore[attr-defined]

    def rate(step: Any) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            done += batch
        return done / (time.perf_counter() - start)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return rate(lambda: app.process(messages)), rate(lambda: est.predict_proba(rows))


def run_conveyor(
    binder: str, url: str, count: int, batch: int, work: Path, model: Path | None
) -> dict[str, Any]:
    home = work / "home"
    url = url or f"embedded://{home / 'streams.db'}"
    name = f"bench{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_TRUSTED_TYPES": TREE,
        # Stream apps may use only files in allowed folders: the work folder.
        "CONVEYOR_STREAM_ROOTS": str(work),
    }
    common = ["--stream", name, "--binder", url, "--batch-size", str(batch)]
    middle = (
        ["--app", "score", "--option", f"model={model}"]
        if model
        else ["--app", "transform", "--option", f"expression={EXPRESSION}"]
    )
    fields = ["--option", "fields=20"] if model else []
    apps = [
        ["--app", "throughput", "--input", f"{name}.transform", "--group", name,
         "--option", f"every={count}"],
        [*middle, "--input", f"{name}.load-generator", "--output", f"{name}.transform",
         "--group", name],
        ["--app", "load-generator", "--output", f"{name}.load-generator",
         "--option", f"count={count}", *fields],
    ]  # fmt: skip
    port = free_port()
    logs = [work / f"{name}-{role}.log" for role in ("sink", "middle", "gen")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor.streams.run", *a, *common],
            env={**env, "PORT": str(port)} if i == 1 else env,
            stderr=logs[i].open("wb"),
        )
        for i, a in enumerate(apps[:2])
    ]
    try:
        # The generator starts once the middle app is running (its model loaded) and both
        # consumers read their input, as on the direct side, so neither side measures a
        # backlog built while the other was loading or joining its group.
        wait_ready(lambda: healthy(port), procs)
        wait_ready(lambda: logged(logs[:2], JOINED.get(binder, " started: ")), procs, "consumers")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "conveyor.streams.run", *apps[2], *common],
                env=env,
                stderr=logs[2].open("wb"),
            )
        )
        # The sink's summary comes from its log line after the last message, not from its
        # --report file: that file is rewritten (write, rename) after every batch, which
        # costs the sink 2-4 ms a batch on this ext4 disk, and the direct sink writes once.
        return wait_report(lambda: read_logged(logs[0]), count, procs)
    except RuntimeError:
        show_logs(logs)
        raise
    finally:
        stop(procs)
        if binder != "embedded":
            b = open_binder(url, Settings.from_env({"CONVEYOR_HOME": str(home)}))
            for dest in (f"{name}.load-generator", f"{name}.transform"):
                b.delete(dest, [name])
            b.close()


def run_direct(
    binder: str, url: str, count: int, batch: int, work: Path, model: Path | None, variant: str = ""
) -> dict[str, Any]:
    name = f"direct{uuid.uuid4().hex[:6]}"
    report = work / f"{name}.json"
    args = [url, name, str(count), str(batch), str(report)]
    broker = binder + variant
    env = {**os.environ, "BENCH_MODEL": str(model or ""), "BENCH_FIELDS": "20" if model else "4"}
    command = [sys.executable, "-m", "bench.streams.direct", broker]
    procs = [subprocess.Popen([*command, role, *args], env=env) for role in ("sink", "transform")]
    try:
        # As on the Conveyor side: the generator starts once the middle stage is ready and
        # both consumers read their input.
        marks = [Path(f"{report}.{mark}") for mark in ("ready", "sink.joined", "transform.joined")]
        wait_ready(lambda: all(p.exists() for p in marks), procs, "consumers")
        procs.append(subprocess.Popen([*command, "gen", *args], env=env))
        return wait_report(lambda: read_report(report), count, procs)
    finally:
        stop(procs)
        cleanup_direct(binder, url, name)


def kafka_url() -> str:
    """BENCH_KAFKA_URL, or a Tansu broker (the tests' stand-in for Kafka) for this run."""
    if os.environ.get("BENCH_KAFKA_URL"):
        return os.environ["BENCH_KAFKA_URL"]
    from tests import tansu

    return tansu.kafka_url()


def cleanup_direct(binder: str, url: str, name: str) -> None:
    if binder in ("kafka", "nats"):
        b = open_binder(url, Settings.from_env({}))
        for stage in ("gen", "transform"):
            if binder == "kafka":
                b.delete(f"direct.{name}.{stage}", [name])
            else:  # the stream the direct loop made, by its own name
                b.call("delete", b.js.delete_stream(f"direct-{name}-{stage}"))  # type: ignore[attr-defined]
        b.close()
    elif binder == "redis":
        import redis

        redis.Redis.from_url(url).delete(f"direct:{name}.gen", f"direct:{name}.transform")
    else:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        for stage in ("gen", "transform"):
            ch.queue_delete(f"direct.{name}.{stage}.q")
            ch.exchange_delete(f"direct.{name}.{stage}")
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--binders", default="embedded,redis,rabbitmq,kafka,nats")
    parser.add_argument("--pipeline", choices=("transform", "score"), default="transform")
    args = parser.parse_args()
    rows: list[tuple[str, str, dict[str, Any]]] = []
    alone = bare = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        model = train_model(Path(tmp) / "model.skops") if args.pipeline == "score" else None
        if model is not None:
            alone, bare = score_alone(model, args.batch)
        for binder in args.binders.split(","):
            if binder in PORTS and not reachable(PORTS[binder]):
                print(f"skipped {binder}: nothing answers on 127.0.0.1:{PORTS[binder]}")
                continue
            work = Path(tmp) / binder
            work.mkdir()
            url = kafka_url() if binder == "kafka" else URLS[binder]
            sizes = (args.count, args.batch, work, model)
            rows.append((binder, "conveyor", run_conveyor(binder, url, *sizes)))
            if binder != "embedded":
                rows.append((binder, "direct", run_direct(binder, url, *sizes)))
            if binder == "rabbitmq":
                batched = run_direct(binder, url, *sizes, "-batch")
                rows.append((binder, "direct, batch confirms", batched))
    from tests import tansu

    tansu.stop()
    # The ratio is against the best hand-written loop on the same broker.
    direct: dict[str, float] = {}
    for b, c, r in rows:
        if c.startswith("direct"):
            direct[b] = max(direct.get(b, 0.0), r["rate"])
    if args.pipeline == "score":
        print(
            f"\nscore app alone, batches of {args.batch}: {alone:,.0f} rows/s; "
            f"bare predict_proba: {bare:,.0f} rows/s ({alone / bare:.2f}x)"
        )
    print(f"\n{args.pipeline}: {args.count} messages, batches of {args.batch}\n")
    print("| binder | contender | messages/s | p50 latency ms | p99 latency ms | x direct |")
    print("|---|---|---:|---:|---:|---:|")
    for binder, contender, r in rows:
        ratio = f"{r['rate'] / direct[binder]:.2f}" if binder in direct else "-"
        print(
            f"| {binder} | {contender} | {r['rate']:,.0f} | {r['p50'] * 1000:,.0f} "
            f"| {r['p99'] * 1000:,.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
