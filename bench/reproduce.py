"""Reproduce cost: ``conveyor reproduce RUN --verify`` against the script's own time.

One run of a deterministic ~2 s script (declaring its result file as an
output) is recorded; then:

- the first ``reproduce --verify`` builds the recorded environment with uv
  (cold cache; reported for information, it depends on uv's download cache);
- further ``reproduce --verify`` runs find the environment cached (warm) and
  alternate round by round with plain ``python script.py``, so load from other
  processes spreads over both; the medians are compared.

Everything happens in a temporary folder (a git project and a fresh
CONVEYOR_HOME with its environment cache), deleted afterwards.

    .venv/bin/python -m bench.reproduce            # full: 2 s script, 7 rounds
    .venv/bin/python -m bench.reproduce --quick    # 0.5 s script, 2 rounds

Goal (issue 2): a warm reproduce takes under 3 s plus the script's own time.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence

from bench._runs import CONVEYOR, SCRIPT, Timed, Workspace, load, parse_args, rounds, workspace

GOAL_SECONDS = 3.0


def last_run_id(ws: Workspace) -> str:
    from conveyor.config import Settings
    from conveyor.store.registry import Registry

    with Registry.from_settings(Settings.from_env({"CONVEYOR_HOME": str(ws.home)})) as registry:
        return registry.list_runs(limit=1)[0].id


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(
        argv,
        prog="python -m bench.reproduce",
        description="Reproduce (warm cache) benchmark.",
        rounds=7,
        quick_rounds=2,
    )

    with workspace(args, "conveyor-bench-repro-") as ws:
        ws.write_project({"script.py": SCRIPT})
        n = ws.loop_count(args.seconds)
        plain = ["python", "script.py", str(n)]
        print(f"loop of {n:,} iterations; recording the run", flush=True)
        ws.run(plain)  # warm the bytecode caches
        ws.run([str(CONVEYOR), "run", "--output", "result.txt", "--", *plain])
        run_id = last_run_id(ws)
        reproduce = [str(CONVEYOR), "reproduce", run_id, "--verify"]
        print(f"run {run_id[:12]} recorded; first reproduce (builds the environment)", flush=True)
        cold = ws.run(reproduce, timeout=1800)
        print(f"cold reproduce: {cold.wall:.2f} s", flush=True)
        samples: dict[str, list[Timed]] = {"script": [], "reproduce": []}
        for round_ in rounds(args):
            order = ["script", "reproduce"] if round_ % 2 == 0 else ["reproduce", "script"]
            for name in order:
                samples[name].append(ws.run(plain if name == "script" else reproduce))
            print(
                f"round {round_ + 1}: script {samples['script'][-1].wall:.3f}s, "
                f"reproduce --verify {samples['reproduce'][-1].wall:.3f}s",
                flush=True,
            )
    print(f"load average at end: {load()}")
    print("every reproduce --verify exited 0 (all outputs identical)")
    print()
    script = statistics.median(t.wall for t in samples["script"])
    warm = statistics.median(t.wall for t in samples["reproduce"])
    warm_cpu = statistics.median(t.cpu for t in samples["reproduce"])
    script_cpu = statistics.median(t.cpu for t in samples["script"])
    print(f"{len(samples['script'])} warm rounds; median of each")
    print()
    print("| command | wall s | minus the script's own time, s | CPU s (all processes) |")
    print("|---|---:|---:|---:|")
    print(f"| python script.py | {script:.3f} | 0 | {script_cpu:.3f} |")
    print(
        f"| conveyor reproduce --verify, warm | {warm:.3f} | {warm - script:.3f} | {warm_cpu:.3f} |"
    )
    print(
        f"| conveyor reproduce --verify, cold (once) | {cold.wall:.3f} | "
        f"{cold.wall - script:.3f} | {cold.cpu:.3f} |"
    )
    print()
    verdict = "met" if warm - script < GOAL_SECONDS else "NOT met"
    print(f"goal (warm < {GOAL_SECONDS:.0f} s + script): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
