"""Growth curves (size -> time and memory): run listings by page, metric steps, artifacts gc.

    .venv/bin/python -m bench.scale                       # runs to 1,000,000; steps to 1,000,000
    .venv/bin/python -m bench.scale --quick               # runs to 100,000; steps to 100,000
    .venv/bin/python -m bench.scale --only runs --db sqlite,postgres

``runs``: a registry of N finished runs (built by executemany through the store
layer), then the median time of 5 tries of: the first page of 50, a page of
50 by cursor from the middle, the last page by cursor, the middle and the last
page by ``--page`` (offset), and the first page of FAILED runs; and once, the
first ``--page`` middle, which builds the checkpoints it starts from. PostgreSQL is
vacuumed after the build (as autovacuum would; the local server runs without it),
so that the page skips read the indexes alone.

``steps``: ``conveyor run -- python logger.py N`` (N ``log_metric`` calls)
against the same loop without the calls; overhead is the wall-time
difference (and the CPU-time difference, which other work on the machine
disturbs less), memory the peak RSS of conveyor and its command; then the
time of ``conveyor runs`` with that history in the registry.

``gc``: N runs each recording one artifact, a sparse file of 1 TiB / N placed
straight in the store, then ``conveyor artifacts gc --dry-run``: its wall time
and peak RSS (issue 21 item 1: under 30 s and 200 MB at 100,000 runs and 1 TiB).

Everything happens in a temporary folder (CONVEYOR_HOME), deleted afterwards;
PostgreSQL uses a fresh schema-less database dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench._runs import machine

PG_ADMIN = os.environ.get(
    "CONVEYOR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PAGE = 50

LOGGER = """
import sys
n = int(sys.argv[1])
if sys.argv[2] == "log":
    import conveyor
    log = conveyor.log_metric
else:
    def log(key, value, step):
        pass
for step in range(n):
    log("loss", 1.0 / (step + 1), step)
"""

PEAK = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - start, used.ru_maxrss, used.ru_utime + used.ru_stime)
"""


def _median_ms(fn: Callable[[], object], tries: int = 5) -> float:
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _fill(registry: object, start: int, stop: int) -> None:
    from conveyor.store import schema

    rows: list[dict[str, object]] = [
        {
            "id": f"{i:032x}",
            "name": "train",
            "status": "FAILED" if i % 10 == 0 else "FINISHED",
            "command": ["python", "train.py"],
            "cwd": "/tmp/project",
            "started_at": 1.7e9 + i,
            "ended_at": 1.7e9 + i + 1,
            "seed": i,
            "host": "benchhost",
            "code": {},
            "environment": {},
        }
        for i in range(start, stop)
    ]
    params = [{"run_id": r["id"], "key": "lr", "value": 0.1, "source": "cli"} for r in rows]
    summaries = [
        {
            "run_id": r["id"],
            "key": "auc",
            "count": 1,
            "min": 0.9,
            "max": 0.9,
            "value": 0.9,
            "step": None,
            "timestamp": 1.0,
        }
        for r in rows
    ]
    with registry.transaction() as conn:  # type: ignore[attr-defined]
        conn.execute(schema.runs.insert(), rows)
        conn.execute(schema.params.insert(), params)
        conn.execute(schema.metric_summary.insert(), summaries)


def bench_runs(url: str, sizes: list[int]) -> None:
    from conveyor.store.listing import encode_cursor
    from conveyor.store.records import RunStatus
    from conveyor.store.registry import Registry

    print(f"\nruns listing on {url.split(':', maxsplit=1)[0]} (ms, median of 5; page of {PAGE})")
    print(
        f"{'runs':>10} {'build s':>8} {'first':>7} {'middle':>7} {'last':>7} "
        f"{'--page mid':>10} {'--page last':>11} {'FAILED':>7} {'checkpoints':>11}"
    )
    with Registry(url) as reg:
        have = 0
        for size in sizes:
            start = time.perf_counter()
            for lo in range(have, size, 50_000):
                _fill(reg, lo, min(size, lo + 50_000))
            have = size
            built = time.perf_counter() - start
            if url.startswith("postgresql"):
                with reg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.exec_driver_sql("VACUUM ANALYZE")
            middle = encode_cursor(1.7e9 + size // 2, f"{size // 2:032x}")
            last = encode_cursor(1.7e9 + PAGE, f"{PAGE:032x}")
            offset = (size // 2 // PAGE) * PAGE
            checks: dict[str, Callable[[], object]] = {
                "first": partial(reg.list_runs_page, limit=PAGE),
                "middle": partial(reg.list_runs_page, limit=PAGE, after=middle),
                "last": partial(reg.list_runs_page, limit=PAGE, after=last),
                "page": partial(reg.list_runs_page, limit=PAGE, offset=offset),
                "deep": partial(reg.list_runs_page, limit=PAGE, offset=size - PAGE),
                "failed": partial(reg.list_runs_page, limit=PAGE, status=RunStatus.FAILED),
            }
            assert len(reg.list_runs_page(limit=PAGE, after=middle).runs) == PAGE
            # The first deep numbered page builds (or extends) the checkpoints it starts from.
            building = _median_ms(checks["page"], tries=1)
            t = {k: _median_ms(fn) for k, fn in checks.items()}
            print(
                f"{size:>10,} {built:>8.1f} {t['first']:>7.1f} {t['middle']:>7.1f} "
                f"{t['last']:>7.1f} {t['page']:>10.1f} {t['deep']:>11.1f} {t['failed']:>7.1f} "
                f"{building:>11.1f}",
                flush=True,
            )


def bench_steps(sizes: list[int]) -> None:
    print("\nmetric steps under conveyor run (one metric, one call a step)")
    print(
        f"{'steps':>10} {'plain s':>8} {'conveyor s':>10} {'overhead s':>10} "
        f"{'CPU s':>6} {'peak MB':>8} {'runs ms':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-scale-") as tmp:
        root = Path(tmp)
        (root / "logger.py").write_text(LOGGER)
        env = {**os.environ, "CONVEYOR_HOME": str(root / "home")}
        env.pop("CONVEYOR_DATABASE_URL", None)
        conveyor = [sys.executable, "-m", "conveyor"]

        def peak(*cmd: str) -> tuple[float, float, float]:
            return _peak(list(cmd), env, root)

        peak(*conveyor, "run", "--", sys.executable, "logger.py", "10", "log")  # warm-up
        for n in sizes:
            plain, _, plain_cpu = peak(sys.executable, "logger.py", str(n), "plain")
            wall, mb, cpu = peak(*conveyor, "run", "--", sys.executable, "logger.py", str(n), "log")
            start = time.perf_counter()
            subprocess.run([*conveyor, "runs"], cwd=root, env=env, check=True, capture_output=True)
            listing = (time.perf_counter() - start) * 1000
            print(
                f"{n:>10,} {plain:>8.2f} {wall:>10.2f} {wall - plain:>10.2f} "
                f"{cpu - plain_cpu:>6.2f} {mb:>8.0f} {listing:>8.0f}",
                flush=True,
            )


def bench_gc(sizes: list[int], total: int = 1 << 40) -> None:
    """``conveyor artifacts gc --dry-run`` over N runs, each with one sparse artifact of total/N."""
    from conveyor.config import Settings
    from conveyor.store import schema
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.registry import Registry

    print(f"\nartifacts gc --dry-run: N runs, one sparse artifact each, {total >> 40} TiB in all")
    print(f"{'runs':>10} {'TiB':>5} {'build s':>8} {'gc s':>7} {'peak MB':>8}")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-scale-") as tmp:
            env = {**os.environ, "CONVEYOR_HOME": tmp}
            env.pop("CONVEYOR_DATABASE_URL", None)
            env.pop("CONVEYOR_ARTIFACT_ROOT", None)
            settings = Settings.from_env(env)
            store = ArtifactStore(settings.artifact_root)
            store.put_bytes(b"warm-up")  # creates the store's folders
            start = time.perf_counter()
            size = total // n
            with Registry.from_settings(settings) as reg:
                for lo in range(0, n, 50_000):
                    _fill(reg, lo, min(n, lo + 50_000))
                    files = []
                    for i in range(lo, min(n, lo + 50_000)):
                        digest = f"blake3:{i:064x}"
                        path = store._path(digest)  # placed directly: sparse, never hashed
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        with open(path, "wb") as fh:
                            fh.truncate(size)  # sparse: no byte written
                        files.append(
                            {
                                "run_id": f"{i:032x}",
                                "role": "output",
                                "path": "model.bin",
                                "digest": digest,
                                "size": size,
                            }
                        )
                    with reg.transaction() as conn:
                        conn.execute(schema.files.insert(), files)
            built = time.perf_counter() - start
            wall, mb, _ = _peak(
                [sys.executable, "-m", "conveyor", "artifacts", "gc", "--dry-run"], env, Path(tmp)
            )
            print(
                f"{n:>10,} {n * size / (1 << 40):>5.1f} {built:>8.1f} {wall:>7.2f} {mb:>8.0f}",
                flush=True,
            )


def bench_log(sizes: list[int], rounds: int = 10, per_round: int = 32 << 20) -> None:
    """The embedded log's disk use while messages of each size go through, round after round.

    Each round publishes ``per_round`` bytes of messages of one size, 64 at a time, to a
    destination with one consumer group that receives and acknowledges each batch; the file
    (log + WAL) is measured after each round. A second destination with a group that never
    reads (a dead tap) gets the same messages, to show the retention limit bounding it.
    """
    from conveyor.streams.binders.embedded import EmbeddedBinder
    from conveyor.streams.messages import Message

    print(f"\nembedded log: {rounds} rounds of {per_round >> 20} MiB published, received, acked")
    print(
        f"{'message':>9} {'msgs':>8} {'MB/s':>7} {'peak MB':>8} {'final MB':>9} {'dead tap MB':>11}"
    )
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-log-") as tmp:
            path = Path(tmp) / "log.db"
            shift = [0.0]

            def clock(shift: list[float] = shift) -> float:
                return time.time() + shift[0]

            binder = EmbeddedBinder(path, retention_bytes=per_round * 2, clock=clock)
            try:
                binder.provision("bench.tap", "dead")
                shift[0] = 3600.0  # the tap's stream was undeployed an hour ago
                binder.provision("bench.live", "reader")
                consumer = binder.consumer("bench.live", "reader", name="reader-0")
                count = max(1, per_round // size)
                payload = {"blob": "x" * size}
                peak, moved = 0.0, 0
                start = time.perf_counter()
                for _ in range(rounds):
                    for lo in range(0, count, 64):  # publish a batch, then read it back
                        batch = [Message(payload) for _ in range(min(64, count - lo))]
                        binder.publish("bench.live", batch)
                        binder.publish("bench.tap", batch)
                        got = 0
                        while got < len(batch):
                            received = consumer.receive(64, timeout=5.0)
                            if received is None:
                                raise RuntimeError(f"the log stopped delivering after {got}")
                            got += len(received.messages)
                            consumer.ack(received)
                    moved += count * size
                    peak = max(peak, _file_mb(path))
                seconds = time.perf_counter() - start
                consumer.close()
                final = _file_mb(path)
                tap = binder.lag("bench.tap", "dead")
            finally:
                binder.close()
            label = f"{size >> 10} KiB" if size < (1 << 20) else f"{size >> 20} MiB"
            print(
                f"{label:>9} {count * rounds:>8,} {moved / seconds / (1 << 20):>7.1f} "
                f"{peak:>8.0f} {final:>9.0f} {(tap or 0) * size / (1 << 20):>11.0f}",
                flush=True,
            )


def _file_mb(path: Path) -> float:
    """MB on disk of an SQLite database and its WAL (allocated blocks, not apparent size)."""
    total = 0
    for name in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(name).st_blocks * 512
    return total / (1 << 20)


def _peak(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of ``cmd`` and its children."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024, float(out[2])


def _pg_database() -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()

    return str(sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)), drop


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="sizes to 100,000 only")
    parser.add_argument("--only", choices=["runs", "steps", "gc", "log"], help="one curve only")
    parser.add_argument("--db", default="sqlite,postgres", help="databases for the runs curve")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if args.only in (None, "runs"):
        for db in args.db.split(","):
            if db == "sqlite":
                with tempfile.TemporaryDirectory(prefix="conveyor-bench-scale-") as tmp:
                    bench_runs(f"sqlite:///{tmp}/registry.db", sizes)
            else:
                url, drop = _pg_database()
                try:
                    bench_runs(url, sizes)
                finally:
                    drop()
    if args.only in (None, "steps"):
        bench_steps(sizes)
    if args.only in (None, "gc"):
        bench_gc([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    if args.only in (None, "log"):
        bench_log([4 << 10, 64 << 10] if args.quick else [4 << 10, 64 << 10, 1 << 20])
    print(
        "\npeak RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
