"""Recording overhead: ``conveyor run -- python script.py`` against plain ``python script.py``.

The script is a deterministic CPU loop of about 2 s (calibrated on this
machine's CPU time). Three commands run in alternating rounds, so load from
other processes spreads over all of them alike; the median wall time of each
is kept:

- ``python script.py N``                            the baseline
- ``conveyor run -- python script.py N``            recording only
- ``conveyor run -- python script.py N --api``      plus 10 ``conveyor.param`` and
                                                    100 ``conveyor.log_metric`` calls

Everything happens in a temporary folder (a git project and a fresh
CONVEYOR_HOME), deleted afterwards.

    .venv/bin/python -m bench.run_overhead            # full: 2 s script, 9 rounds
    .venv/bin/python -m bench.run_overhead --quick    # 0.5 s script, 3 rounds

Goals (issue 2): overhead at most 10 % and under 150 ms.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence

from bench._runs import CONVEYOR, SCRIPT, Timed, Workspace, load, parse_args, rounds, workspace

GOAL_RATIO = 0.10
GOAL_MS = 150.0


def check_recorded(ws: Workspace, runs: int) -> str:
    """Every recorded run finished, and the API runs hold 10 params and 100 metrics."""
    from conveyor.config import Settings
    from conveyor.store.registry import Registry

    with Registry.from_settings(Settings.from_env({"CONVEYOR_HOME": str(ws.home)})) as registry:
        listed = registry.list_runs(limit=runs + 10)
        bad = [r.id[:12] for r in listed if r.status.value != "FINISHED"]
        api = [registry.get_run(r.id) for r in listed if "--api" in r.command]
    if len(listed) != runs or bad:
        return f"PROBLEM: {len(listed)} runs recorded for {runs} started; not finished: {bad}"
    wrong = [r.id[:12] for r in api if len(r.params) != 10 or len(r.metrics) != 100]
    if wrong:
        return f"PROBLEM: API runs without 10 params and 100 metrics: {wrong}"
    return f"all {runs} runs recorded as FINISHED; {len(api)} API runs hold 10 params, 100 metrics"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(
        argv,
        prog="python -m bench.run_overhead",
        description="Run recording overhead benchmark.",
        rounds=9,
        quick_rounds=3,
    )

    with workspace(args, "conveyor-bench-run-") as ws:
        ws.write_project({"script.py": SCRIPT})
        n = ws.loop_count(args.seconds)
        plain = ["python", "script.py", str(n)]
        commands = {
            "python script.py": plain,
            "conveyor run -- python script.py": [str(CONVEYOR), "run", "--", *plain],
            "conveyor run, 10 params + 100 metrics": [str(CONVEYOR), "run", "--", *plain, "--api"],
        }
        print(f"loop of {n:,} iterations; warming up (bytecode caches, registry)", flush=True)
        for command in commands.values():
            ws.run(command)
        recorded = 2
        samples: dict[str, list[Timed]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in rounds(args):
            # Rotate the order each round so no command always runs first after a pause.
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                samples[name].append(ws.run(commands[name]))
                recorded += name != "python script.py"
            line = ", ".join(
                f"{k.split(',')[-1].strip()} {v[-1].wall:.3f}s" for k, v in samples.items()
            )
            print(f"round {round_ + 1}: {line}", flush=True)
        check = check_recorded(ws, recorded)
    print(f"load average at end: {load()}")
    print(check)
    print()
    base = samples["python script.py"]
    base_wall = statistics.median(t.wall for t in base)
    base_cpu = statistics.median(t.cpu for t in base)
    print(f"{len(base)} rounds; median of each")
    print()
    print(
        "| command | wall s | overhead ms | overhead % | CPU s (all processes) | CPU overhead ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    verdicts = []
    for name, timed in samples.items():
        wall = statistics.median(t.wall for t in timed)
        cpu = statistics.median(t.cpu for t in timed)
        over = wall - base_wall
        print(
            f"| {name} | {wall:.3f} | {over * 1000:+.0f} | {over / base_wall * 100:+.1f} | "
            f"{cpu:.3f} | {(cpu - base_cpu) * 1000:+.0f} |"
        )
        if timed is not base:
            ok = over <= GOAL_RATIO * base_wall and over * 1000 < GOAL_MS
            verdicts.append(f"{name}: {'met' if ok else 'NOT met'}")
    print()
    print(f"goal (<= {GOAL_RATIO:.0%} and < {GOAL_MS:.0f} ms): " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
