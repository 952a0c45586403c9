"""The run journal: JSON lines a running command appends and the recorder reads.

The child writes with O_APPEND, one ``os.write`` per line, so lines from
several processes of one run never interleave, and whatever was written
before a crash or SIGKILL survives. Standard library only: this module is
imported inside the user's process.

Metric values, the one event a script may log a million times, go to a file
of their own (``metrics.tsv``) in a compact line per value, written in
batches (see _MetricBuffer)::

    <step>\t<value>\t<time>\t<key as a JSON string>\n

so the recorder parses a step without JSON and reading the other events never
wades through the metrics (reading them back at the end once cost 4-5 s a
million steps).
"""

from __future__ import annotations

import atexit
import json
import operator
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "JOURNAL_NAME",
    "METRICS_NAME",
    "append_event",
    "append_line",
    "append_metric",
    "flush_metrics",
    "read_events",
    "read_lines",
]

JOURNAL_NAME = "journal.jsonl"
METRICS_NAME = "metrics.tsv"

#: Dense metric logging is written in batches of this many lines ...
METRIC_BATCH = 1000
#: ... or after this long; logging sparser than that writes every line at once.
METRIC_INTERVAL = 0.5


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` as one JSON line, in one write (whole even beside other writers)."""
    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class _MetricBuffer:
    """Metric lines waiting to be appended in one write: a training loop's step costs ~2 µs.

    One ``os.write`` per step (open, write, close) cost about 17 µs. Lines wait
    at most METRIC_INTERVAL while steps keep coming, and are written at exit;
    a SIGKILL loses at most that half second of steps.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[str] = []
        self.run_dir: str | Path | None = None
        self.path: Path | None = None
        self.flushed = 0.0

    def add(self, run_dir: str | Path, line: str) -> None:
        with self.lock:
            if self.run_dir != run_dir:
                self._write()
                self.run_dir, self.path = run_dir, Path(run_dir) / METRICS_NAME
            self.lines.append(line)
            now = time.monotonic()
            if len(self.lines) >= METRIC_BATCH or now - self.flushed >= METRIC_INTERVAL:
                self._write()
                self.flushed = now

    def flush(self) -> None:
        with self.lock:
            self._write()

    def forget(self) -> None:
        """In a forked child: the parent writes what it had buffered.

        A multiprocessing child ends by ``os._exit``, which runs no atexit
        function: its steps are written by a multiprocessing finalizer instead
        (registered once the child has cleared its parent's, see
        ``multiprocessing.util.register_after_fork``).
        """
        self.lock = threading.Lock()
        self.lines = []
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.register_after_fork(self, _flush_at_child_exit)

    def _write(self) -> None:
        if not self.lines or self.path is None:
            return
        data = "".join(self.lines).encode()
        self.lines = []
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _flush_at_child_exit(buffer: _MetricBuffer) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, buffer.flush, exitpriority=10)


_metrics = _MetricBuffer()
atexit.register(_metrics.flush)
os.register_at_fork(after_in_child=_metrics.forget)


#: Metric names as JSON strings (tabs and newlines escaped): a loop logs a few names often.
_keys: dict[str, str] = {}


def append_metric(run_dir: str | Path, key: str, value: float, step: int | None) -> None:
    """Journal one metric value; lines are batched (see _MetricBuffer) and whole in the file.

    ``repr`` of a float is what ``float()`` reads back, ``inf`` and ``nan``
    included; a step that is not an integer is recorded as none.
    """
    name = _keys.get(key)
    if name is None:
        name = _keys[key] = json.dumps(key)
    if type(step) is not int:
        step = _integer(step)
    at = "" if step is None else step
    _metrics.add(run_dir, f"{at}\t{value!r}\t{time.time()!r}\t{name}\n")


def _integer(step: object) -> int | None:
    try:
        return operator.index(step)  # type: ignore[arg-type]
    except TypeError:
        return None


def flush_metrics() -> None:
    """Write the metric lines still buffered (before the run is read, or another event)."""
    _metrics.flush()


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
