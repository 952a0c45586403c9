"""Real processes: ``load-generator | filter | file`` over the embedded binder.

Each app runs as the platform will start it, ``python -m conveyor.streams.run``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.config import Settings
from conveyor.streams.apps.base import AppContext
from conveyor.streams.apps.sources import LoadGenerator
from conveyor.streams.binders import open_binder
from conveyor.streams.catalogue import Role, app_spec
from tests.streams.conftest import BINDERS, binder_url
from tests.waiting import eventually, poll

pytestmark = pytest.mark.slow

COUNT = 3000
PATIENCE = 90.0


def expected_seqs(count: int) -> set[int]:
    """The seq of every generated event with amount > 0 (same seed, same events)."""
    options = app_spec("load-generator", Role.SOURCE).resolve({"count": str(count)})
    gen = LoadGenerator(AppContext(options, "demo", "gen", Settings.from_env({})))
    seqs: set[int] = set()
    made = 0
    for batch in gen.batches():
        made += len(batch)
        seqs |= {m.payload["seq"] for m in batch if m.payload["amount"] > 0}
        if made == count:
            return seqs
    raise AssertionError("unreachable")


def start(home: Path, *args: str, log: Path, port: int | None = None) -> subprocess.Popen[bytes]:
    # The apps may write in the test folder (which holds the home, kept out of their reach).
    env = {"PATH": os.environ["PATH"], "CONVEYOR_HOME": str(home)}
    env["CONVEYOR_STREAM_ROOTS"] = str(home.parent)
    if port is not None:
        env["PORT"] = str(port)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor.streams.run", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def stopped_at_exit(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, Any]:
    """GET from an app's status port, waiting for it to listen."""

    def answer() -> tuple[int, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                return reply.status, orjson.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
        except OSError:
            return None  # not listening yet

    return eventually(answer, what=f"port {port} to answer {path}", timeout=PATIENCE, interval=0.1)


def lines(path: Path) -> list[int]:
    """The seq of every complete line (the sink may be half-way through writing the last)."""
    if not path.exists():
        return []
    complete = path.read_bytes().rpartition(b"\n")[0]
    return [orjson.loads(line)["seq"] for line in complete.splitlines() if line]


def wait_for_seqs(path: Path, wanted: set[int]) -> list[int]:
    got = lines(path)

    def arrived() -> bool:
        got[:] = lines(path)
        return wanted <= set(got)

    poll(arrived, timeout=PATIENCE, interval=0.2)  # the caller's assertion shows what came
    return got


def pipeline(out: Path, binder: str, stream: str = "demo") -> dict[str, list[str]]:
    common = ["--stream", stream, "--binder", binder, "--batch-size", "200"]
    return {
        "gen": ["--app", "load-generator", "--output", f"{stream}.load-generator",
                "--option", f"count={COUNT}", *common],
        "filter": ["--app", "filter", "--input", f"{stream}.load-generator",
                   "--output", f"{stream}.filter", "--group", stream,
                   "--option", "expression=amount > 0", *common],
        "file": ["--app", "file", "--input", f"{stream}.filter", "--group", stream,
                 "--option", f"path={out}", *common],
    }  # fmt: skip


@pytest.mark.parametrize("kind", BINDERS)
def test_every_message_arrives_and_the_apps_stop_cleanly(
    kind: str, tmp_path: Path, settings: Settings
) -> None:
    home, out, log = tmp_path / "home", tmp_path / "out.jsonl", tmp_path / "apps.log"
    url = binder_url(kind, home)
    stream = f"demo{uuid.uuid4().hex[:8]}"
    wanted = expected_seqs(COUNT)
    apps = pipeline(out, url, stream)
    port = free_port()
    procs = [
        start(home, *apps[name], log=log, port=port if name == "filter" else None)
        for name in ("file", "filter", "gen")
    ]
    try:
        with stopped_at_exit(procs):
            got = wait_for_seqs(out, wanted)
            assert set(got) == wanted, log.read_text()[-3000:]
            assert len(got) == len(wanted)  # nothing crashed, so nothing was delivered twice
            # The filter answers the platform's health check and says what it did.
            assert get(port, "/health") == (200, {"status": "running"})
            # The sink can have a batch before the filter has its broker's confirms.
            status = get(port, "/status")[1]

            def confirmed() -> bool:
                status.update(get(port, "/status")[1])
                return bool(status["published"] >= len(wanted))

            poll(confirmed, timeout=PATIENCE)
            assert status["received"] == COUNT
            assert status["published"] == len(wanted)
            assert (status["role"], status["input"], status["group"]) == (
                "processor", f"{stream}.load-generator", stream,
            )  # fmt: skip
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                metrics = reply.read().decode()
            assert (
                f'conveyor_stream_messages_received_total{{stream="{stream}",label="filter",'
                f'app="filter",instance="0"}} {COUNT}'
            ) in metrics
            for p in procs:
                p.send_signal(signal.SIGTERM)
            assert [p.wait(PATIENCE) for p in procs] == [0, 0, 0], log.read_text()[-3000:]
    finally:
        cleanup(kind, url, stream, settings)
    text = log.read_text()
    assert f"{stream}/filter#0" in text
    assert f"received={COUNT} published={len(wanted)} dead-lettered=0" in text


@pytest.mark.parametrize("kind", BINDERS)
def test_kill_9_of_the_processor_loses_nothing(
    kind: str, tmp_path: Path, settings: Settings
) -> None:
    home, out, log = tmp_path / "home", tmp_path / "out.jsonl", tmp_path / "apps.log"
    wanted = expected_seqs(COUNT)
    # A short lease so the batch the killed filter held comes back quickly (RabbitMQ
    # requeues it as soon as the connection drops).
    url = binder_url(kind, home, lease=2.0)
    stream = f"kill{uuid.uuid4().hex[:8]}"
    apps = pipeline(out, url, stream)
    apps["gen"] += ["--option", "rate=3000"]
    procs = [start(home, *apps[name], log=log) for name in ("file", "filter", "gen")]
    try:
        with stopped_at_exit(procs):
            poll(lambda: len(lines(out)) >= 200, timeout=PATIENCE)
            procs[1].kill()  # kill -9 of the filter, mid-stream
            procs[1].wait()
            procs.append(start(home, *apps["filter"], log=log))
            got = wait_for_seqs(out, wanted)
            assert set(got) == wanted, log.read_text()[-3000:]
    finally:
        cleanup(kind, url, stream, settings)


def cleanup(kind: str, url: str, stream: str, settings: Settings) -> None:
    """Remove a test stream's destinations from a shared broker."""
    if kind != "embedded":
        binder = open_binder(url, settings)
        for dest in (f"{stream}.load-generator", f"{stream}.filter"):
            binder.delete(dest, [stream])
        binder.close()
