"""The run journal: JSON lines a running command appends and the recorder reads.

The child writes with O_APPEND, one ``os.write`` per line, so lines from
several processes of one run never interleave, and whatever was written
before a crash or SIGKILL survives. Standard library only: this module is
imported inside the user's process.

Metric values, the one event a script may log a million times, go to a file
of their own, packed (see :mod:`conveyor.repro.metric_journal`): reading the
other events never wades through them (reading them back at the end once
cost 4-5 s a million steps).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "JOURNAL_NAME",
    "append_event",
    "append_line",
    "read_events",
    "read_lines",
]

JOURNAL_NAME = "journal.jsonl"


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` as one JSON line, in one write (whole even beside other writers)."""
    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete entry with a ``type``; a torn last line (killed mid-write) is skipped."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and "type" in entry:
                yield entry


def append_event(run_dir: str | Path, kind: str, **fields: Any) -> None:
    """Append one event of ``kind`` to the journal in ``run_dir``."""
    append_line(Path(run_dir) / JOURNAL_NAME, {"type": kind, "time": time.time(), **fields})


def read_events(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete event in the journal of ``run_dir``."""
    return read_lines(Path(run_dir) / JOURNAL_NAME)
