"""Rolling pushes under load: failed requests while revisions replace each other (goal: 0).

    python -m bench.platform.rolling [--pushes 3] [--connections 16]

A real platform runs two instances of the platform tests' stdlib app
(tests/platform/apps/hello.py: no dependencies, so nothing is fetched; it
dies at once on SIGTERM, so any request still sent to a stopping instance
fails); wrk keeps `--connections` keep-alive connections busy through the
router while `conveyor push` rolls the app onto a new revision `--pushes`
times. Reports requests, non-2xx answers and socket errors as wrk counts
them, and the same numbers for the naive alternative of stopping the old
instances before starting the new ones (`conveyor stop` + `conveyor start`,
what piku and a plain restart do).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from bench.platform._control import conveyor, running_platform

ROOT = Path(__file__).resolve().parents[2]


def write_app(folder: Path, generation: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "platform" / "apps" / "hello.py", folder / "hello.py")
    (folder / "conveyor.yml").write_text(
        textwrap.dedent(
            f"""\
            applications:
              - name: busy
                command: python hello.py
                instances: 2
                health-check: {{type: http, endpoint: /health}}
                env: {{GENERATION: "{generation}"}}
            """
        )
    )


def under_load(
    router: str, seconds: int, connections: int, actions: list[Callable[[], None]]
) -> dict[str, int]:
    """wrk against the app for ``seconds`` while ``actions`` run one after another."""
    script = ROOT / "bench" / "platform" / "report.lua"
    wrk = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{router}/busy/"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # let wrk ramp up before the first deploy
    for action in actions:
        action()
    out, _ = wrk.communicate(timeout=seconds + 60)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result: dict[str, int] = json.loads(line[len("RESULT ") :])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-rolling-"))
    try:
        with running_platform(work) as (env, router):
            folder = work / "busy"
            write_app(folder, 0)
            conveyor(env, folder, "push")
            generation = iter(range(1, 1000))

            def push() -> None:
                write_app(folder, next(generation))
                conveyor(env, folder, "push")

            def stop_start() -> None:
                conveyor(env, folder, "stop", "busy")
                conveyor(env, folder, "start", "busy")

            seconds = 4 + 4 * args.pushes
            rolling = under_load(router, seconds, args.connections, [push] * args.pushes)
            naive = under_load(router, seconds, args.connections, [stop_start] * args.pushes)
        print(f"\n{args.pushes} deploys under load, {args.connections} connections, wrk\n")
        print("| deploy | requests | non-2xx | socket errors | p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for label, r in (("rolling `conveyor push`", rolling), ("stop + start", naive)):
            print(
                f"| {label} | {r['requests']} | {r['status_errors']} | {r['socket_errors']} "
                f"| {r['p99_us'] / 1000:.1f} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
