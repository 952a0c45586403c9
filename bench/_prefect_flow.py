"""The 20-step flow of ``bench.tasks`` under Prefect; run by the Prefect venv's Python.

Each task runs ``/bin/true`` as a process, one after another, as the composed
task's steps do. Prints JSON: the first flow run (which starts Prefect's
ephemeral local server) and the median of the warm runs after it, in seconds.
Standard library and Prefect only: this file never imports conveyor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

STEPS = 20


def _true() -> int:
    return subprocess.run(["/bin/true"], check=True).returncode


def main(rounds: int) -> None:
    # Prefect is in the benchmark's own venv, not in Conveyor's (mypy does not see it).
    from prefect import flow, task  # type: ignore[import-not-found,unused-ignore]

    step: Any = task(_true)

    def steps() -> None:
        for _ in range(STEPS):
            step()

    twenty: Any = flow(steps, name="twenty")
    started = time.perf_counter()
    twenty()
    first = time.perf_counter() - started
    warm = []
    for _ in range(rounds):
        started = time.perf_counter()
        twenty()
        warm.append(time.perf_counter() - started)
    print(json.dumps({"first": first, "warm": statistics.median(warm)}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
