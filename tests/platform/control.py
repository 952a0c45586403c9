"""A real platform for tests: ``conveyor server`` in its own home, on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.cli.client import PlatformClient
from conveyor.config import Settings
from tests.cli_process import run_conveyor
from tests.waiting import eventually

HELLO = Path(__file__).parent / "apps" / "hello.py"
VENV_BIN = str(Path(sys.executable).parent)
#: Generous bound for things that normally take well under a second.
DEADLINE = 60.0


@dataclass
class Platform:
    """One platform process and a CLI pointed at it."""

    home: Path
    project: Path
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("CONVEYOR_DATABASE_URL", "CONVEYOR_ARTIFACT_ROOT", "VIRTUAL_ENV"):
            env.pop(key, None)
        env.update(
            CONVEYOR_HOME=str(self.home),
            CONVEYOR_API="127.0.0.1:0",
            CONVEYOR_ROUTER="127.0.0.1:0",
            PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
        )
        env.update(self.extra_env)
        return env

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    def start(self) -> None:
        endpoint = self.settings.platform_dir / "server.json"
        endpoint.unlink(missing_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "server-test.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "server"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process

        def ready() -> bool:
            assert process.poll() is None, f"the platform exited: {self.server_log()}"
            return endpoint.exists()

        eventually(ready, what="the platform to write server.json")

    def server_log(self) -> str:
        path = self.home / "server-test.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def client(self) -> PlatformClient:
        return PlatformClient(self.settings, timeout=DEADLINE * 3)

    @property
    def router(self) -> str:
        return str(self.client.call("GET", "/v1/info")["router"])

    def cli(
        self, *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run_conveyor(
            args,
            cwd=cwd or self.project,
            env=self.env(),
            check=check,
            timeout=timeout,
            context=f"\nserver:\n{self.server_log()[-3000:]}",
        )

    def app(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = self.client.call("GET", f"/v1/apps/{name}")
        return data

    def write_hello_app(self, name: str, *, instances: int = 2, extra: str = "") -> Path:
        """A manifest with the stdlib hello app as ``name``; returns the manifest path."""
        folder = self.project / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(HELLO, folder / "hello.py")
        manifest = self.project / f"{name}.yml"
        manifest.write_text(
            "applications:\n"
            f"  - name: {name}\n"
            f"    path: ./{name}\n"
            "    command: python hello.py\n"
            f"    instances: {instances}\n"
            "    health-check: {type: http, endpoint: /health, timeout: 30}\n" + extra
        )
        return manifest


@contextmanager
def running_platform(root: Path) -> Iterator[Platform]:
    """A platform in ``root/home`` with its project folder ``root/project``, stopped after."""
    (root / "project").mkdir(parents=True, exist_ok=True)
    running = Platform(home=root / "home", project=root / "project")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def get(url: str, *, host: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    """GET through the router: (status, JSON body)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")
