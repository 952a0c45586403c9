"""Running uv, the installer behind reproduction environments and droplets.

The binary comes from the ``uv`` wheel (a dependency), else from PATH. Every
call byte-compiles what it installs (this machine sets PYTHONDONTWRITEBYTECODE,
so nothing else would) and never downloads a Python interpreter.

    out = run_uv(["pip", "compile", "requirements.txt"], "resolve the requirements",
                 error=StagingError, hint="Fix the requirements and push again.")
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conveyor.errors import ConveyorError

__all__ = ["run_uv", "uv_binary"]

#: How many of uv's last stderr lines an error carries.
_TAIL = 15


def uv_binary(error: type[ConveyorError] = ConveyorError) -> str:
    """The uv executable; ``error`` (with an install hint) when there is none."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise error("uv was not found", hint="Install it with: pip install uv") from None
        return found


def run_uv(
    args: list[str],
    what: str,
    *,
    error: type[ConveyorError] = ConveyorError,
    hint: str | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    compile_bytecode: bool = True,
) -> str:
    """Run uv and return its stdout; on failure raise ``error`` with uv's last lines.

    Installs write ``.pyc`` files unless ``compile_bytecode`` is False.
    """
    env = dict(os.environ, UV_COMPILE_BYTECODE="1", UV_PYTHON_DOWNLOADS="never")
    if not compile_bytecode:
        env.pop("UV_COMPILE_BYTECODE")
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(
            [uv_binary(error), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise error(
            f"could not {what}: uv did not finish within {timeout:.0f} s",
            hint="Check that PyPI (or your package index) answers, then try again.",
        ) from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-_TAIL:])
        raise error(f"could not {what}:\n{tail}", hint=hint)
    return proc.stdout
