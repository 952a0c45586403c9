"""A broker that goes away while a stream app runs: the app reconnects and nothing is lost.

The app reaches the broker through a TCP proxy the test can cut: every open
connection is dropped and new ones are refused until the proxy is restored.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder, open_binder
from conveyor.streams.messages import Message
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.streams.conftest import binder_url
from tests.streams.helpers import PATIENCE, Running, collect
from tests.waiting import poll

pytestmark = pytest.mark.slow


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a broker; ``cut()`` drops everything until ``restore()``."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture(params=["redis", "rabbitmq", "nats"])
def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(direct URL, URL through a cuttable proxy) of a real broker."""
    direct = binder_url(request.param, tmp_path)
    port = {"redis": 6379, "rabbitmq": 5672, "nats": 4222}[request.param]
    proxy = CuttableProxy(port)
    via = direct.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")
    request.node.proxy = proxy
    yield direct, via
    proxy.close()


def test_an_app_reconnects_after_the_broker_goes_away_and_loses_nothing(
    proxied: tuple[str, str], settings: Settings, request: pytest.FixtureRequest
) -> None:
    direct_url, proxy_url = proxied
    proxy: CuttableProxy = request.node.proxy
    name = f"rc{uuid.uuid4().hex[:8]}"
    source, output = f"{name}.in", f"{name}.out"
    direct = open_binder(direct_url, settings)
    direct.provision(source, name)
    direct.provision(output, name)
    spec = LaunchSpec(
        "filter", {"expression": "n >= 0"}, binder=proxy_url, input=source, output=output,
        group=name, batch_size=10,
    )  # fmt: skip
    runtime = StreamAppRuntime(spec, settings)
    runtime.start()
    app = Running(runtime)
    try:
        direct.publish(source, [Message({"n": n}) for n in range(20)])
        first = collect(direct, output, name, 20)
        proxy.cut()
        direct.publish(source, [Message({"n": n}) for n in range(20, 50)])
        time.sleep(1.0)  # the app meets the dead connection and backs off (no event to await)
        proxy.restore()
        second = collect_covering(direct, output, name, set(range(20, 50)))
    finally:
        app.stop()
        for dest in (source, output):
            direct.delete(dest, [name])
        direct.close()
    assert sorted(m.payload["n"] for m in first) == list(range(20))
    # At-least-once: a batch in flight when the connection died may arrive twice.
    assert second >= set(range(20, 50))


def collect_covering(binder: Binder, destination: str, group: str, wanted: set[int]) -> set[int]:
    """Receive until every wanted ``n`` arrived (duplicates allowed) or the patience ran out."""
    consumer = binder.consumer(destination, group, name="test")
    seen: set[int] = set()

    def covered() -> bool:
        batch = consumer.receive(100, timeout=0.2)
        if batch:
            seen.update(m.payload["n"] for m in batch.messages)
            consumer.ack(batch)
        return wanted <= seen

    poll(covered, timeout=PATIENCE, interval=0)
    consumer.close()
    return seen
