"""The http source under a burst of connections: every request answered, none lost."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.streams.apps import httpsource
from conveyor.streams.binders import Binder
from tests.streams.helpers import PATIENCE, Running, collect, run_app
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


def test_a_stream_that_cannot_publish_answers_503_with_retry_after_and_loses_nothing(
    binder: Binder, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short waits so the test does not sit out the production 30 s; the broker is stalled
    # for real: another writer holds the embedded log's write lock.
    monkeypatch.setattr(httpsource, "_INBOX", 4)
    monkeypatch.setattr(httpsource, "_QUEUE_WAIT", 0.2)
    monkeypatch.setattr(httpsource, "_PUBLISH_WAIT", 0.5)
    binder.provision("h.http", "h")
    app = run_app(
        binder, settings, app="http", output="h.http", stream="h", options={"path": "/tx"}
    )
    port = app.runtime.app.port
    holder = sqlite3.connect(tmp_path / "streams.db", isolation_level=None, timeout=PATIENCE)
    try:
        holder.execute("BEGIN IMMEDIATE")  # publishing now waits for the lock
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda n: _post_one(port, n), range(12)))
        holder.execute("ROLLBACK")
        refused = [(n, body) for n, (status, _, body) in enumerate(answers) if status == 503]
        assert len(refused) == 12, answers  # nothing could be published: all refused
        assert all(retry == "1" for _, retry, _ in answers)  # each told when to try again
        never_sent = {n for n, body in refused if "nothing was published" in body}
        assert never_sent  # the inbox was full for some: they were not taken at all
        # Once the broker takes writes again the source answers 202, and the requests it had
        # taken (answered "could not be published in time") still arrive: none is lost, and
        # none it said it had not taken appears.
        assert _post_one(port, 99)[0] == 202
        taken = 12 - len(never_sent)
        got = collect(binder, "h.http", "h", taken + 1)
        numbers = {m.payload["n"] for m in got}
        assert numbers == (set(range(12)) - never_sent) | {99}
    finally:
        holder.close()
        app.stop()


def _post_one(port: int, n: int) -> tuple[int, str | None, str]:
    """POST one record ``{"n": n}``: the status, its Retry-After header and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        body = json.dumps([{"n": n}])
        connection.request("POST", "/tx", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Retry-After"), response.read().decode()
    finally:
        connection.close()
