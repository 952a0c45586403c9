"""Running ``conveyor`` as a user does: a real process, its output captured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_conveyor(
    args: tuple[str, ...],
    *,
    cwd: Path,
    env: Mapping[str, str],
    check: bool = True,
    timeout: float = 300,
    context: str = "",
) -> subprocess.CompletedProcess[str]:
    """``python -m conveyor ARGS``; with ``check``, a non-zero exit fails with all output."""
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"conveyor {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}{context}"
        )
    return proc
