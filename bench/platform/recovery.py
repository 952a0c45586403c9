"""Recovery after kill -9: time until the instance is RUNNING and routed again.

    python -m bench.platform.recovery [--kills 5] [--instances 2]

The supervisor, route table and router run in this process (uvloop); the
instances are ``busy_app`` (uvicorn, no work per request). Each round kills
instance 0 with SIGKILL and measures the time until the supervisor reports
it ready (and so routed) again — the immediate restart of a first crash —
while a client keeps sending requests through the router and counts
failures. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time

import httpx

from conveyor.platform import CrashBackoff, InstanceSpec, Route, Router, RouteTable, Supervisor
from conveyor.platform.supervisor import Event

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEADLINE = 60.0


async def measure(kills: int, instances: int) -> None:
    table = RouteTable()
    table.add_route(Route("busy", path="/busy"))
    ready: asyncio.Queue[Event] = asyncio.Queue()

    def on_event(event: Event) -> None:
        table.apply(event)
        if event.kind == "ready":
            ready.put_nowait(event)

    # Cloud Foundry's schedule restarts only the first three crashes at once and
    # forgets crashes after 5 minutes running; here each kill must count as a
    # first crash, so the count resets after 1 s running.
    supervisor = Supervisor(
        events=on_event,
        base_env={**os.environ, "PYTHONPATH": ROOT},
        backoff=CrashBackoff(reset_after=1.0),
    )
    router = Router(table)
    # busy_app takes its port as an argument: let a shell expand $PORT.
    spec = InstanceSpec(
        app="busy",
        command=("sh", "-c", f'exec "{sys.executable}" -m bench.platform.busy_app "$PORT" 0'),
    )
    for index in range(instances):
        supervisor.start(spec, index)
    for _ in range(instances):
        await asyncio.wait_for(ready.get(), DEADLINE)
    host, port = await router.start()
    sent = failed = 0
    stop = asyncio.Event()

    async def load() -> None:
        nonlocal sent, failed
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            while not stop.is_set() and sent < 1_000_000:
                sent += 1
                try:
                    response = await client.get("/busy/")
                    failed += response.status_code != 200
                except httpx.HTTPError:
                    failed += 1

    loader = asyncio.create_task(load())
    times = []
    try:
        for _ in range(kills):
            victim = supervisor.instances("busy")[0]
            assert victim.pid is not None
            started = time.perf_counter()
            os.killpg(victim.pid, signal.SIGKILL)
            while True:
                event = await asyncio.wait_for(ready.get(), DEADLINE)
                if event.index == 0:
                    break
            times.append(time.perf_counter() - started)
            await asyncio.sleep(1.5)  # run past reset_after before the next kill
    finally:
        stop.set()
        await loader
        await router.close()
        await supervisor.stop_all()
    print(f"\n{kills} kills, {instances} instances, requests through the router meanwhile\n")
    print("| kill -9 → RUNNING and routed | median s | max s | requests | failed |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| busy_app (uvicorn) | {statistics.median(times):.2f} | {max(times):.2f} "
        f"| {sent} | {failed} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    import uvloop

    uvloop.run(measure(args.kills, args.instances))


if __name__ == "__main__":
    main()
