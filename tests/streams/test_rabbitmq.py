"""The RabbitMQ binder's own behaviour: a normal shutdown is quiet, even of a dropped connection."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from conveyor.config import Settings
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.streams.conftest import RABBIT_URL, binder_url
from tests.streams.helpers import Running


def test_stopping_an_app_whose_idle_connection_the_broker_dropped_logs_no_traceback(
    tmp_path: pytest.TempPathFactory, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    binder_url("rabbitmq", settings.home)  # skips (or fails under CI) without RabbitMQ
    destination = f"q{uuid.uuid4().hex[:10]}"
    spec = LaunchSpec(app="log", input=destination, group="g", binder=RABBIT_URL)
    runtime = StreamAppRuntime(spec, settings)
    runtime.start()
    app = Running(runtime)
    caplog.set_level(logging.INFO)
    # A sink never publishes, so the broker drops its publishing connection once it misses
    # heartbeats; cutting the socket does the same without waiting for them.
    runtime.binder._publisher._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
    app.stop()
    assert "Traceback" not in caplog.text
    loud = [r for r in caplog.records if r.name.startswith("pika") and r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info] + loud
    assert "log stopped: received=0" in caplog.text
    cleaner = StreamAppRuntime(spec, settings)
    cleaner.binder.delete(destination, ["g"])
    cleaner.binder.close()
