"""Serving throughput with the request log on (every request recorded) against off, side by side.

    python -m bench.request_log [--duration 10] [--rounds 5] [--connections 32]

The same `conveyor serve` of the serving benchmark's model (GradientBoosting,
100 trees, 20 features, 2 workers), started twice: once as by default, once
with ``CONVEYOR_REQUEST_LOG=on`` (100 % of requests recorded for
``conveyor lineage``). Both are measured in turn with wrk, round after round,
1-row and 100-row requests; the report gives each round's on/off ratio and
their median (the goal is at least 0.9x), and checks that the log holds as
many ids as wrk's requests.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.serving.__main__ import (
    TREE,
    WORKERS,
    Contender,
    Result,
    free_port,
    measure_once,
    prepare,
    start,
    stop,
)


def _contender(name: str, skops: Path, env: dict[str, str]) -> Contender:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("conveyor")), "serve", str(skops), "--name", "gbc",
        "--workers", str(WORKERS), "--port", str(port),
    ]  # fmt: skip
    return Contender(
        name,
        command,
        f"http://127.0.0.1:{port}/v2/health/ready",
        "/invocations",
        lambda rows: {"inputs": rows},
        env={"CONVEYOR_TRUSTED_TYPES": TREE, **env},
    )


def _logged_ids(folder: Path) -> int:
    return sum(
        sum(1 for line in path.read_bytes().splitlines() if line and line[:1] not in b"#@")
        for path in folder.rglob("requests-*.log")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_log", description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed; on Debian/Ubuntu: apt-get install -y wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-request-log-"))
    home = work / "home"
    try:
        x, skops, _ = prepare(work)
        off = _contender("request log off (default)", skops, {"CONVEYOR_HOME": str(home)})
        on = _contender(
            "request log on (100 %)",
            skops,
            {"CONVEYOR_HOME": str(home), "CONVEYOR_REQUEST_LOG": "on"},
        )
        running = [start(off, x, work, [1, 100]), start(on, x, work, [1, 100])]
        rounds: list[dict[tuple[str, int], Result]] = []
        try:
            for index in range(max(1, args.rounds)):
                print(f"round {index + 1} of {args.rounds}", flush=True)
                # Alternate who goes first, so neither always meets a warmer machine.
                order = running if index % 2 == 0 else running[::-1]
                results = [
                    res for r in order for res in measure_once(r, args.duration, args.connections)
                ]
                rounds.append({(res.contender, res.rows): res for res in results})
        finally:
            for r in running:
                stop(r.proc)
        measured = sum(
            res.requests_per_s * args.duration
            for rnd in rounds
            for (name, _), res in rnd.items()
            if name == on.name
        )
        logged = _logged_ids(home / "platform" / "requests")
        lines = [
            f"wrk, {args.connections} connections, {args.duration} s per run after a 2 s warm-up, "
            f"{args.rounds} rounds alternating the order; `conveyor serve --workers {WORKERS}`, "
            "POST /invocations.",
            "",
            "| rows/request | off: requests/s | on: requests/s | on/off per round | median "
            "| p99 ms off → on | server CPU µs/request off → on |",
            "|---:|---:|---:|---|---:|---:|---:|",
        ]
        for rows in (1, 100):
            pairs = [(rnd[(off.name, rows)], rnd[(on.name, rows)]) for rnd in rounds]
            ratios = [b.requests_per_s / a.requests_per_s for a, b in pairs]
            lines.append(
                f"| {rows} | {statistics.median(a.requests_per_s for a, _ in pairs):,.0f} "
                f"| {statistics.median(b.requests_per_s for _, b in pairs):,.0f} "
                f"| {', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}x** "
                f"| {statistics.median(a.p99_ms for a, _ in pairs):.1f} → "
                f"{statistics.median(b.p99_ms for _, b in pairs):.1f} "
                f"| {statistics.median(a.cpu_us for a, _ in pairs):,.0f} → "
                f"{statistics.median(b.cpu_us for _, b in pairs):,.0f} |"
            )
        lines += [
            "",
            f"Request ids in the log-on server's log: {logged:,}, for about {measured:,.0f} "
            "measured requests plus the warm-ups and probes (the off server wrote none).",
        ]
        print("\n" + "\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
