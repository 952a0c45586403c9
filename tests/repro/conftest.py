"""Helpers for driving ``conveyor`` as a user does: a real process in a project folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli_process import run_conveyor

VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Cli:
    """Runs ``conveyor`` with its own CONVEYOR_HOME, in a project folder."""

    home: Path
    project: Path
    extra_env: dict[str, str]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("CONVEYOR_DATABASE_URL", "CONVEYOR_ARTIFACT_ROOT", "VIRTUAL_ENV"):
            env.pop(key, None)
        env["CONVEYOR_HOME"] = str(self.home)
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env.update(self.extra_env)
        return env

    def __call__(
        self, *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run_conveyor(
            args, cwd=cwd or self.project, env=self.env(), check=check, timeout=timeout
        )

    def start(self, *args: str, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
        """``conveyor ARGS`` started in the background, its stdout and stderr piped."""
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.project,
            env=self.env(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def python(self, script: str) -> subprocess.CompletedProcess[str]:
        """``python SCRIPT`` in the project, outside ``conveyor run``, as a shell would."""
        return subprocess.run(
            [sys.executable, script],
            cwd=self.project,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )

    def last_run(self) -> dict[str, Any]:
        listed = json.loads(self("runs", "--json", "--limit", "1").stdout)
        return self.show(listed[0]["id"])

    def show(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self("runs", "show", run_id, "--json").stdout)
        return data


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    project = tmp_path / "project"
    project.mkdir()
    return Cli(home=tmp_path / "home", project=project, extra_env={})


@pytest.fixture
def write(cli: Cli) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = cli.project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
