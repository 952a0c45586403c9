"""HTTP/1.1 as clients speak it, on raw sockets: pipelining, Expect, HEAD, limits, bad requests."""

from __future__ import annotations

import json
import socket
import struct

import httptools
import pytest

from conveyor.config import Settings

from .conftest import Serve, Trained

ROW = json.dumps({"inputs": [[0.5] * 20]}).encode()


@pytest.fixture
def address(serve: Serve, gbc: Trained, trusting: Settings) -> tuple[str, int]:
    base = serve(gbc.path, trusting, max_body=64 * 1024, timeout=2.0, keep_alive=0.5)
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


class Answers:
    """Reads responses off a raw connection with llhttp, the way a client library would."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.done: list[dict[str, object]] = []
        self.closed = False
        self._current: dict[str, object] = {}
        self._body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._current = {"headers": {}}
        self._body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._current["headers"]
        assert isinstance(headers, dict)
        headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self._current["status"] = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self._current["body"] = self._body
        self.done.append(self._current)

    def read(self, count: int) -> list[dict[str, object]]:
        """Wait (the socket's timeout at most) until ``count`` responses or the server's close."""
        while len(self.done) < count:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                break
            self.parser.feed_data(data)
        return self.done


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def _post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "host: test", "content-type: application/json"]
    head += [f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads the rest; EOF or reset)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            _post("/invocations", ROW, "x-request-id: first")
            + b"GET /v2/health/ready HTTP/1.1\r\nhost: test\r\nx-request-id: second\r\n\r\n"
            + _post("/v2/models/nope/infer", ROW, "x-request-id: third")
        )
        answers = Answers(sock).read(3)
    assert [a["status"] for a in answers] == [200, 200, 404]
    assert [a["headers"]["x-request-id"] for a in answers] == ["first", "second", "third"]  # type: ignore[index]
    assert "predictions" in json.loads(answers[0]["body"])  # type: ignore[arg-type]
    assert json.loads(answers[1]["body"]) == {"ready": True}  # type: ignore[arg-type]


def test_thousands_of_pipelined_requests_are_all_answered(address: tuple[str, int]) -> None:
    count = 3000
    with _connect(address) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\n\r\n" * count)
        answers = Answers(sock).read(count)
    assert len(answers) == count
    assert {a["status"] for a in answers} == {200}


def test_a_client_that_leaves_mid_request_is_counted_and_not_left_in_flight() -> None:
    import re

    import httpx

    from conveyor.serving import ResolvedModel, ServeOptions
    from conveyor.serving.server import bind_sockets, run_in_thread
    from tests.waiting import eventually

    from .conftest import wait_ready
    from .test_cli_serve import SlowModel

    model = SlowModel()
    resolved = ResolvedModel(model=model, name="slow", source="test", digest="blake3:" + "0" * 64)
    sock = bind_sockets("127.0.0.1", 0, 1)[0]
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    _, stop = run_in_thread(resolved, ServeOptions(graceful_timeout=5), sock)
    try:
        wait_ready(base)
        body = b'[{"v": 1.0}]'
        with _connect(("127.0.0.1", port)) as client:
            client.sendall(_post("/predict", body))
            assert model.entered.wait(30)
            # Gone for good (a reset), not just done sending (that still gets its answer).
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        model.release.set()  # the answer now has nowhere to go

        def counted() -> str:
            text = httpx.get(f"{base}/metrics", timeout=10).text
            return text if 'kind="disconnect"' in text else ""

        text = eventually(counted, what="the disconnect to be counted", timeout=30)
        assert 'conveyor_errors_total{kind="disconnect",model="slow"} 1.0' in text
        assert 'conveyor_requests_total{model="slow",protocol="records",status="499"} 1.0' in text
        in_flight = re.search(r'conveyor_requests_in_flight\{model="slow"\} ([\d.]+)', text)
        assert in_flight is not None
        assert float(in_flight.group(1)) == 1.0  # the scrape itself, nothing left over
    finally:
        model.release.set()
        stop()


def test_expect_100_continue(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        head = _post("/invocations", b"", "expect: 100-continue")
        head = head.replace(b"content-length: 0", f"content-length: {len(ROW)}".encode())
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(ROW)
        answers = Answers(sock).read(1)
    assert answers[0]["status"] == 200


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    address: tuple[str, int],
) -> None:
    with _connect(address) as sock:
        head = _post("/invocations", b"", "expect: 100-continue")
        sock.sendall(head.replace(b"content-length: 0", b"content-length: 10000000"))
        reader = Answers(sock)
        answers = reader.read(1)
        assert answers[0]["status"] == 413
        assert answers[0]["headers"]["connection"] == "close"  # type: ignore[index]
        assert "65536-byte limit" in json.loads(answers[0]["body"])["error"]  # type: ignore[arg-type]
        assert _closed(sock)


def test_head_answers_the_head_alone(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(b"HEAD /v2/health/ready HTTP/1.1\r\nhost: test\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, _, after = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: %d\r\n" % len(b'{"ready":true}') in head + b"\r\n"
        assert b"\r\ndate: " in head
        assert after == b""  # no body follows the head of a HEAD answer
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: test\r\n\r\n")
        rest = Answers(sock).read(1)[0]
        assert json.loads(rest["body"]) == {"live": True}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
        (_post("/predict", b"[]").replace(b"length: 2", b"length: -1"), 400, "Content-Length"),
        (_post("/predict", b"[]").replace(b"length: 2", b"length: 2x"), 400, "Content-Length"),
        (_post("/predict", b"[]", "content-length: 3"), 400, "Duplicate Content-Length"),
        (
            b"GET / HTTP/1.1\r\nhost: t\r\n" + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            "larger than 64 KiB",
        ),
    ],
)
def test_bad_requests_get_an_error_and_the_connection_closes(
    address: tuple[str, int], request_bytes: bytes, status: int, words: str
) -> None:
    with _connect(address) as sock:
        sock.sendall(request_bytes)
        answers = Answers(sock).read(1)
        assert answers[0]["status"] == status
        assert words in json.loads(answers[0]["body"])["error"]  # type: ignore[arg-type]
        assert answers[0]["headers"]["x-request-id"]  # type: ignore[index]
        assert _closed(sock)


def test_a_body_that_never_arrives_is_408_after_the_timeout(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        head = _post("/invocations", b"", "x-request-id: slow")
        sock.sendall(head.replace(b"content-length: 0", b"content-length: 500") + b'{"inp')
        answers = Answers(sock).read(1)
        assert answers[0]["status"] == 408
        assert "2 s timeout" in json.loads(answers[0]["body"])["error"]  # type: ignore[arg-type]
        assert _closed(sock)


def test_http_1_0_connection_close_and_upgrades_end_the_connection(
    address: tuple[str, int],
) -> None:
    for request in (
        b"GET /v2/health/live HTTP/1.0\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        # An upgrade (WebSocket here) is declined by answering in plain HTTP/1.1.
        b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\n"
        b"upgrade: websocket\r\nsec-websocket-version: 13\r\n\r\n",
    ):
        with _connect(address) as sock:
            sock.sendall(request)
            answers = Answers(sock).read(1)
            assert answers[0]["status"] == 200
            assert answers[0]["headers"]["connection"] == "close"  # type: ignore[index]
            assert _closed(sock)


def test_a_chunked_body_is_read_and_limited(address: tuple[str, int]) -> None:
    def chunked(payload: bytes, size: int) -> bytes:
        out = b""
        for i in range(0, len(payload), size):
            piece = payload[i : i + size]
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        return out + b"0\r\n\r\n"

    head = b"POST /invocations HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    with _connect(address) as sock:
        sock.sendall(head + chunked(ROW, 7))
        assert Answers(sock).read(1)[0]["status"] == 200
    with _connect(address) as sock:
        sock.sendall(head + chunked(b"[" + b"1.0," * 20_000 + b"1.0]", 4096))
        answers = Answers(sock).read(1)
        assert answers[0]["status"] == 413
        assert _closed(sock)


def test_a_half_closed_client_still_gets_its_answer(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(_post("/invocations", ROW))
        sock.shutdown(socket.SHUT_WR)
        answers = Answers(sock).read(1)
        assert answers[0]["status"] == 200
        assert _closed(sock)


def test_an_idle_keep_alive_connection_is_closed(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\n\r\n")
        answers = Answers(sock).read(1)
        assert answers[0]["status"] == 200
        assert "connection" not in answers[0]["headers"]  # type: ignore[operator]
        assert sock.recv(65536) == b""  # the server closes it after --keep-alive (0.5 s here)
