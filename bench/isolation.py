"""Start-up cost of isolation: an instance running ``true``, started plainly and in its sandbox.

Alternating rounds of the plain spawner (what the supervisor uses today) and
the isolated one (namespaces, hidden platform folders, own /proc; a uid per
app when run as root), with and without a memory limit; the median wall time
from spawn to exit of each is kept. Everything lives in a temporary
CONVEYOR_HOME, deleted afterwards.

    .venv/bin/python -m bench.isolation            # 20 starts of each
    .venv/bin/python -m bench.isolation --starts 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from conveyor.config import Settings
from conveyor.platform.instance_env import instance_env
from conveyor.platform.isolation import IsolatedSpawner, Sandbox
from conveyor.platform.processes import SpawnRequest, SubprocessSpawner


async def timed(start: Callable[[], Awaitable[int]]) -> float:
    began = time.perf_counter()
    status = await start()
    if status != 0:
        raise SystemExit(f"PROBLEM: an instance of `true` exited with status {status}")
    return (time.perf_counter() - began) * 1000


async def main(starts: int) -> None:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        settings = Settings.from_env({"CONVEYOR_HOME": str(Path(tmp) / "home")})
        settings.platform_dir.mkdir(parents=True)
        env = instance_env({}, app="bench", revision=1, index=0, port=0)
        plain, isolated = SubprocessSpawner(), IsolatedSpawner(settings)
        print(f"isolation here: {isolated.check().describe()}")

        def ignore(_stream: str, _text: str) -> None:
            pass

        async def run_plain() -> int:
            return await (await plain.spawn(SpawnRequest(["true"], env, None, ignore))).wait()

        async def run_isolated(limit: int | None = None) -> int:
            sandbox = Sandbox(app="bench", memory_limit=limit)
            handle = await isolated.spawn(SpawnRequest(["true"], env, None, ignore, sandbox))
            return await handle.wait()

        kinds: dict[str, Callable[[], Awaitable[int]]] = {
            "plain": run_plain,
            "isolated": run_isolated,
            "isolated + 256 MiB limit": lambda: run_isolated(256 << 20),
        }
        times: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(starts):
            for name, start in kinds.items():
                times[name].append(await timed(start))
        base = statistics.median(times["plain"])
        print(f"{starts} starts of `true` each, median spawn-to-exit:")
        for name, samples in times.items():
            median = statistics.median(samples)
            print(
                f"  {name:<26} {median:7.1f} ms  (+{median - base:5.1f} ms; "
                f"min {min(samples):.1f}, max {max(samples):.1f})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    asyncio.run(main(parser.parse_args().starts))
