"""An instance that spends a fixed amount of CPU per request, like a small model would.

    python -m bench.platform.busy_app PORT MICROSECONDS

uvicorn + uvloop + httptools, one process; each request busy-waits the
given CPU time, then answers a fixed JSON document.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.serving.floor_app import answer, read_body

WORK_NS = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    end = time.thread_time_ns() + WORK_NS
    while time.thread_time_ns() < end:
        pass
    await answer(send)


def main() -> None:
    import uvicorn

    global WORK_NS
    port, WORK_NS = int(sys.argv[1]), int(sys.argv[2]) * 1000
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
