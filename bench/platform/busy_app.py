"""An instance that spends a fixed amount of CPU per request, like a small model would.

    python -m bench.platform.busy_app PORT MICROSECONDS

uvicorn + uvloop + httptools, one process; each request busy-waits the
given CPU time, then answers a fixed JSON document.
"""

from __future__ import annotations

import sys
import time
from typing import Any

BODY = b'{"predictions":[1]}'
WORK_NS = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    end = time.thread_time_ns() + WORK_NS
    while time.thread_time_ns() < end:
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


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
