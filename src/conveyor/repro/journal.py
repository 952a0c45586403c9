"""The run journal: JSON lines a running command appends and the recorder reads.

The child writes with O_APPEND, one ``os.write`` per line, so lines from
several processes of one run never interleave, and whatever was written
before a crash or SIGKILL survives. Standard library only: this module is
imported inside the user's process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_NAME", "append_event", "read_events"]

JOURNAL_NAME = "journal.jsonl"


def append_event(run_dir: str | Path, kind: str, **fields: Any) -> None:
    """Append one event of ``kind`` to the journal in ``run_dir``."""
    event = {"type": kind, "time": time.time(), **fields}
    line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(Path(run_dir) / JOURNAL_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_events(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete event in the journal; a torn last line (killed mid-write) is skipped."""
    path = Path(run_dir) / JOURNAL_NAME
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and "type" in event:
                yield event
