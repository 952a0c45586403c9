"""Router overhead: requests/s and p99 through the router against straight to the instance.

    python -m bench.platform.router [--duration 10] [--connections 32] [--instances 1]
                                    [--work-us 0]

One machine, one run, same load generator (wrk, keep-alive connections, GET):
first straight to the instance(s), then through ``conveyor.platform.router``
(uvloop, its own process) to the same instance(s). The instances are the
serving benchmark's floor app (uvicorn + uvloop + httptools, one worker
each), so the router is measured against the fastest backend we have; with
``--work-us N`` they are ``busy_app`` instances spending N µs of CPU per
request, as a small model would. The
router, the instance and wrk share the machine's cores, as they do in use.
The router counts every request for the autoscaler (its meter), as the
platform's does; a last row runs a second router without it.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import _wrk

ROOT = Path(__file__).resolve().parents[2]
LUA = Path(__file__).with_name("report.lua")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {deadline:g} s")


def serve_router(port: int, metered: int, backends: list[int]) -> None:
    """Run the router in this process until killed (the child side of the benchmark)."""
    import uvloop

    from conveyor.platform.router import Meter, Router
    from conveyor.platform.routes import Route, RouteTable

    async def main() -> None:
        table = RouteTable()
        table.add_route(Route("floor", host="floor.localhost"))
        table.add_route(Route("floor", path="/floor"))
        for i, backend in enumerate(backends):
            table.set_backend("floor", f"floor/{i}", "127.0.0.1", backend)
        # The platform's router always counts for the autoscaler; 0 shows what that costs.
        router = Router(table, meter=Meter() if metered else None)
        await router.start("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


def wrk(url: str, duration: int, connections: int, host: str = "") -> dict[str, float]:
    env = {"BENCH_HOST": host}
    data = _wrk.run(url, LUA, seconds=duration, connections=connections, threads=1, env=env)
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--work-us", type=int, default=0)
    parser.add_argument("--serve-router", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_router:
        serve_router(args.serve_router[0], args.serve_router[1], args.serve_router[2:])
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        backends = [free_port() for _ in range(args.instances)]
        work = args.work_us
        for port in backends:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.serving.floor_app", str(port), "1"]
                    if not args.work_us
                    else [sys.executable, "-m", "bench.platform.busy_app", str(port), str(work)],
                    env=env,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )
        router_port, bare_port = free_port(), free_port()
        for port, metered in ((router_port, "1"), (bare_port, "0")):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.platform.router", "--serve-router",
                     str(port), metered, *map(str, backends)],
                    env=env,
                    cwd=ROOT,
                    start_new_session=True,
                )
            )  # fmt: skip
        for port in [*backends, router_port, bare_port]:
            wait_port(port)
        # Warm up both paths (pools, caches) before measuring.
        wrk(f"http://127.0.0.1:{backends[0]}/", 2, args.connections)
        wrk(f"http://127.0.0.1:{router_port}/floor/", 2, args.connections)
        wrk(f"http://127.0.0.1:{bare_port}/floor/", 2, args.connections)
        rows = []
        load = (args.duration, args.connections)
        if args.instances == 1:
            direct = wrk(f"http://127.0.0.1:{backends[0]}/", *load)
            rows.append(("straight to the instance", direct))
        by_path = wrk(f"http://127.0.0.1:{router_port}/floor/", *load)
        rows.append(("through the router, path route", by_path))
        by_host = wrk(f"http://127.0.0.1:{router_port}/", *load, host="floor.localhost")
        rows.append(("through the router, host route", by_host))
        bare = wrk(f"http://127.0.0.1:{bare_port}/floor/", *load)
        rows.append(("through the router without its meter, path route", bare))
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)
    base = rows[0][1]["rps"]
    print(
        f"\n{args.instances} instance(s), {args.connections} connections, {args.duration} s each\n"
    )
    print("| path | requests/s | p50 ms | p99 ms | errors | vs first row |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        errors = int(r["status_errors"] + r["socket_errors"])
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} "
            f"| {errors} | {r['rps'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
