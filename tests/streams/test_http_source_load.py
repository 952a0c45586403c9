"""The http source under a burst of connections: every request answered, none lost."""

from __future__ import annotations

import socket
import threading
from collections import Counter

from conveyor.streams.binders import Binder
from tests.streams.helpers import PATIENCE, Running, collect
from tests.streams.test_http_source import source  # noqa: F401 - the fixture

#: More connections at once than socketserver's default listen backlog (5) held.
BURST = 300


def _post(sock: socket.socket, head: bytes, answers: dict[int, bytes], i: int) -> None:
    try:
        sock.settimeout(PATIENCE)
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        answers[i] = reply
    except OSError as exc:
        answers[i] = repr(exc).encode()
    finally:
        sock.close()


def test_a_burst_of_connections_is_answered_whole(
    binder: Binder,
    source: tuple[Running, int],  # noqa: F811
) -> None:
    _, port = source
    body = b'{"a": 1}'
    head = (
        f"POST /tx HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    # Every connection is opened before any request is sent: the burst a router makes.
    socks = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) for _ in range(BURST)]
    answers: dict[int, bytes] = {}
    threads = [
        threading.Thread(target=_post, args=(s, head, answers, i)) for i, s in enumerate(socks)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = Counter(a.split(b"\r\n", 1)[0].split(b" ", 1)[-1] for a in answers.values())
    assert statuses == {b"202 Accepted": BURST}
    assert len(collect(binder, "h.http", "h", BURST)) == BURST
