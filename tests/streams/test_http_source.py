"""The http source: what it accepts (JSON, CSV), and the requests it refuses and why."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder
from conveyor.streams.token_hash import hash_token
from tests.streams.helpers import PATIENCE, Running, collect, run_app


def request(port: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b"") -> Any:
    """POST /tx with exactly these headers (however wrong); the status and decoded reply."""
    pairs = list(headers.items() if isinstance(headers, dict) else headers)
    if not any(name == "Host" for name, _ in pairs):
        pairs.insert(0, ("Host", f"127.0.0.1:{port}"))
    head = "POST /tx HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), orjson.loads(rest.partition(b"\r\n\r\n")[2])


def json_post(body: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Content-Length": str(len(body)), **extra}


@pytest.fixture
def source(binder: Binder, settings: Settings) -> Iterator[tuple[Running, int]]:
    app = run_app(
        binder, settings, app="http", output="h.http", stream="h", options={"path": "/tx"}
    )
    try:
        yield app, app.runtime.app.port
    finally:
        app.stop()


def test_json_and_csv_are_accepted(binder: Binder, source: tuple[Running, int]) -> None:
    _, port = source
    assert request(port, json_post(b'[{"a": 1}]'), b'[{"a": 1}]') == (202, {"accepted": 1})
    csv_body = b"a,b\r\n2,x\r\n3,y\r\n"
    headers = {"Content-Type": "text/csv; charset=utf-8", "Content-Length": str(len(csv_body))}
    assert request(port, headers, csv_body) == (202, {"accepted": 2})
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    assert request(port, chunked, b'5\r\n{"a":\r\n2\r\n4}\r\n0\r\n\r\n') == (202, {"accepted": 1})
    got = collect(binder, "h.http", "h", 4)
    assert [m.payload for m in got] == [
        {"a": 1},
        {"a": 2, "b": "x"},
        {"a": 3, "b": "y"},
        {"a": 4},
    ]


def test_status_counts_the_messages_the_source_accepted(
    binder: Binder, source: tuple[Running, int]
) -> None:
    _, port = source
    body = b'[{"a": 1}, {"a": 2}, {"a": 3}]'
    for _ in range(2):
        assert request(port, json_post(body), body) == (202, {"accepted": 3})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=PATIENCE) as reply:
        status = orjson.loads(reply.read())
    assert (status["app"], status["received"], status["published"]) == ("http", 6, 6)
    assert status["counted_since"] <= time.time()
    forwarded = urllib.request.Request(
        f"http://127.0.0.1:{port}/status", headers={"X-Forwarded-For": "10.0.0.9"}
    )
    with pytest.raises(urllib.error.HTTPError):  # not through the router
        urllib.request.urlopen(forwarded, timeout=PATIENCE)


def test_a_web_page_cannot_post_into_the_stream(
    binder: Binder, source: tuple[Running, int]
) -> None:
    _, port = source
    body = b'{"from": "evil"}'
    # What a page on any site can send without the browser asking first.
    status, reply = request(
        port,
        {"Host": "evil.example", "Origin": "http://evil.example", "Content-Type": "text/plain",
         "Content-Length": str(len(body))},
        body,
    )  # fmt: skip
    assert status == 403
    assert "http://evil.example are refused" in reply["error"]
    status, reply = request(port, json_post(body, Origin="http://localhost:3000"), body)
    assert status == 403
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Length": str(len(body))}
        if content_type:
            headers["Content-Type"] = content_type
        status, reply = request(port, headers, body)
        assert status == 415
        assert "send application/json" in reply["error"]
    # The source's own page (same loopback origin) may post.
    own = json_post(b'{"from": "own"}', Origin=f"http://127.0.0.1:{port}")
    assert request(port, own, b'{"from": "own"}')[0] == 202
    (only,) = collect(binder, "h.http", "h", 1)
    assert only.payload == {"from": "own"}


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ([("Content-Length", "-1")], 400, "Content-Length '-1' is not a byte count"),
        ([("Content-Length", "12abc")], 400, "is not a byte count"),
        ([("Content-Length", "+5")], 400, "is not a byte count"),
        ([("Content-Length", "5"), ("Content-Length", "7")], 400, "given 2 times"),
        ([("Content-Length", str(40 * 1024 * 1024))], 413, "at most 16777216"),
        ([("Transfer-Encoding", "chunked")], 413, "over 16777216 bytes"),
        ([("Transfer-Encoding", "gzip")], 400, "Transfer-Encoding 'gzip'"),
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], 400, "Transfer-Encoding"),
        ([], 411, "needs a Content-Length"),
    ],
)
def test_a_body_is_never_read_past_its_limit(
    binder: Binder,
    source: tuple[Running, int],
    headers: list[tuple[str, str]],
    status: int,
    error: str,
) -> None:
    _, port = source
    # A chunked body announcing one chunk past the limit: refused before it is read.
    body = b"1000001\r\n" + b"x" * 1024 if ("Transfer-Encoding", "chunked") in headers else b"{}"
    got, reply = request(port, [("Content-Type", "application/json"), *headers], body)
    assert (got, error in reply["error"]) == (status, True), reply


def test_an_auth_token_is_required_when_given(binder: Binder, settings: Settings) -> None:
    app = run_app(
        binder, settings, app="http", output="t.http", stream="t",
        options={"path": "/tx", "auth-token": "s3cret"},
    )  # fmt: skip
    port, body = app.runtime.app.port, b'{"n": 1}'
    try:
        status, reply = request(port, json_post(body), body)
        assert status == 401
        assert "Authorization: Bearer" in reply["error"]
        assert request(port, json_post(body, Authorization="Bearer wrong"), body)[0] == 401
        assert request(port, json_post(body, Authorization="Bearer s3cret"), body)[0] == 202
        (only,) = collect(binder, "t.http", "t", 1)
    finally:
        app.stop()
    assert only.payload == {"n": 1}


def test_a_hashed_auth_token_takes_the_token_it_stands_for(
    binder: Binder, settings: Settings
) -> None:
    app = run_app(
        binder, settings, app="http", output="h.http", stream="h",
        options={"path": "/tx", "auth-token": hash_token("s3cret")},
    )  # fmt: skip
    port, body = app.runtime.app.port, b'{"n": 2}'
    try:
        assert request(port, json_post(body), body)[0] == 401
        assert request(port, json_post(body, Authorization="Bearer wrong"), body)[0] == 401
        assert request(port, json_post(body, Authorization="Basic s3cret"), body)[0] == 401
        for _ in range(2):  # the second from the source's memory of the accepted token
            assert request(port, json_post(body, Authorization="Bearer s3cret"), body)[0] == 202
        assert request(port, json_post(body, Authorization="Bearer s3cre"), body)[0] == 401
        assert len(collect(binder, "h.http", "h", 2)) == 2
    finally:
        app.stop()


def test_a_client_that_sends_less_than_it_announced_is_answered_not_waited_on(
    source: tuple[Running, int],
) -> None:
    _, port = source
    status, reply = request(port, json_post(b"{}" * 50), b'{"short": 1}')
    assert status == 400
    assert "the body ended after 12 of 100 bytes" in reply["error"]
