"""A real platform for the benchmarks: `conveyor server` in a temporary home, offline uv."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEADLINE = 600.0
BIN = Path(sys.executable).parent


def platform_env(home: Path) -> dict[str, str]:
    """The environment of a platform in ``home`` on free loopback ports, never reaching PyPI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(
        CONVEYOR_HOME=str(home),
        CONVEYOR_API="127.0.0.1:0",
        CONVEYOR_ROUTER="127.0.0.1:0",
        CONVEYOR_TRUSTED_TYPES="sklearn.tree._tree.Tree",
        UV_OFFLINE="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


@contextmanager
def running_platform(
    work: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[dict[str, str], str]]:
    """Start a platform in ``work/home`` (``extra`` added to its environment).

    Yields its environment and router URL.
    """
    env = {**platform_env(work / "home"), **(extra or {})}
    with platform_server(env, work / "server.log", 60) as addresses:
        yield env, addresses["router"]


@contextmanager
def platform_server(env: dict[str, str], log: Path, deadline: float) -> Iterator[dict[str, Any]]:
    """Run ``conveyor server`` in ``env`` (its output to ``log``) until the block ends.

    Yields its ``server.json`` (the ``api`` and ``router`` URLs) once it has written it.
    """
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        endpoint = Path(env["CONVEYOR_HOME"]) / "platform" / "server.json"
        until("the platform", endpoint.exists, deadline)
        yield json.loads(endpoint.read_text())
    finally:
        server.terminate()
        server.wait(timeout=120)


def conveyor(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"conveyor {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def until(what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(url: str, body: bytes | None = None, want: Callable[[Any], bool] = bool) -> bool:
    """Whether ``url`` answers 200 with a JSON body that ``want`` accepts."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and want(json.loads(response.read()))
    except (OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
