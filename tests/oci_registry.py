"""A real OCI registry for the tests: Debian's ``docker-registry`` (the CNCF distribution registry).

:func:`start` writes a no-auth configuration (the packaged one enables
htpasswd) with a free loopback port and a storage folder of its own, starts
``docker-registry serve`` and waits (polling ``/v2/``, with a deadline) until
it answers; :meth:`OciRegistry.stop` ends it by its pid. The registry's
access log is kept, so tests can count what was uploaded and mounted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx

from tests.engine_process import free_ports, stop

__all__ = ["OciRegistry", "Request", "skopeo", "start"]

_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


@dataclass(frozen=True)
class Request:
    """One request the registry answered, from its access log (the URI decoded)."""

    method: str
    uri: str
    status: int


@dataclass
class OciRegistry:
    """A running registry: ``host`` is ``127.0.0.1:<port>``."""

    process: subprocess.Popen[bytes]
    host: str
    log: Path

    def requests(self) -> list[Request]:
        text = self.log.read_text(errors="replace")
        found = _ACCESS.finditer(text)
        return [Request(m["method"], unquote(m["uri"]), int(m["status"])) for m in found]

    def stop(self) -> None:
        stop(self.process)


def binary() -> str | None:
    return shutil.which("docker-registry")


def start(folder: Path, *, timeout: float = 30.0) -> OciRegistry:
    """Start a registry storing under ``folder``; RuntimeError if it does not answer in time."""
    exe = binary()
    if exe is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    (port,) = free_ports(1)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = folder / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    registry = OciRegistry(process=process, host=f"127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://{registry.host}/v2/", timeout=2).status_code == 200:
                return registry
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"docker-registry did not answer on {registry.host} within {timeout:.0f} s")


def skopeo(*args: str) -> str:
    """Run Debian's skopeo; its stdout, or an AssertionError carrying its stderr.

    Skips the test where skopeo is not installed (fails it under CONVEYOR_REQUIRE_SERVICES=1).
    """
    if shutil.which("skopeo") is None:
        import pytest

        reason = "skopeo is not installed (apt-get install skopeo)"
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
