"""One run of wrk (the HTTP load generator) for a benchmark, and the result it reports.

The Lua script given prints one line ``RESULT {json}`` when wrk is done (see
``bench/serving/report.lua``); that JSON is what :func:`run` returns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["run"]


def run(
    url: str,
    script: Path,
    *,
    seconds: int,
    connections: int,
    threads: int,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """Load ``url`` for ``seconds`` with ``script`` (``env`` added to its environment)."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"^RESULT (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    data: dict[str, Any] = json.loads(match.group(1))
    return data
