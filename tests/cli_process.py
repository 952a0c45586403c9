"""Running ``conveyor`` as a user does: a real process, its output captured."""

from __future__ import annotations

import ast
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


def modules_loaded(code: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has imported after running ``code``."""
    report = f"print('LOADED', sorted(m for m in {watched!r} if m in sys.modules))"
    probe = f"{code}\nimport sys\n{report}\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("LOADED "))
    return list(ast.literal_eval(line.removeprefix("LOADED ")))
