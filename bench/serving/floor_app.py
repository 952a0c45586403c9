"""The floor: a hello-world ASGI app on conveyor serve's stack (uvicorn, uvloop, httptools).

It reads the request body and answers a fixed JSON document, so the gap
between it and a real service is what scoring and protocols cost.

    python -m bench.serving.floor_app PORT WORKERS
"""

from __future__ import annotations

import sys
from typing import Any

BODY = b'{"predictions":[1]}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    await answer(send)


async def read_body(receive: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def answer(send: Any) -> None:
    """Send the fixed JSON document."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import os
    import socket

    import uvicorn

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    # Same socket layout as conveyor serve: one SO_REUSEPORT socket per worker.
    socks = []
    for _ in range(workers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(2048)
        socks.append(sock)
    for i in range(workers - 1):
        if os.fork() == 0:
            sock = socks[i + 1]
            break
    else:
        sock = socks[0]
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", access_log=False, log_level="warning", lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
