"""Moves the metrics a run logs from its journal into the registry while it runs.

The recorder once held every metric in memory until the command ended (0.8 KB
a step: 831 MB for a million steps). The feed reads the journal from where it
stopped, and writes what it finds in batches of at most ``batch`` rows, each
batch also folding into the run's metric summaries; so memory stays flat
however many steps a run logs, and the end of a run writes only its tail.

    feed = MetricFeed(registry, run_id, run_dir / JOURNAL_NAME)
    feed.pump()     # every second or so while the command runs, and once after
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson

from conveyor.store.metrics import MetricRow

__all__ = ["MetricFeed"]

#: The journal's metric lines start so (see journal.append_metric), which skips the
#: others without parsing them.
_METRIC_PREFIX = b'{"type":"metric"'


class MetricFeed:
    """Reads new metric lines of one journal and writes them to the registry in batches."""

    def __init__(self, registry: Any, run_id: str, journal: Path, *, batch: int = 10_000) -> None:
        self.registry, self.run_id, self.journal, self.batch = registry, run_id, journal, batch
        #: Bytes of the journal already read: a complete line is read once.
        self.offset = 0
        self.written = 0

    def pump(self) -> int:
        """Write the metrics logged since the last pump; returns how many were written.

        A torn last line (still being written) waits for the next pump. The
        offset moves only past rows the registry accepted, so a pump that fails
        is repeated whole by the next one.
        """
        pending: list[MetricRow] = []
        written = 0
        try:
            fh = self.journal.open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            fh.seek(self.offset)
            position = self.offset
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                position += len(raw)
                record = _metric(raw) if raw.startswith(_METRIC_PREFIX) else None
                if record is not None:
                    pending.append(record)
                if len(pending) >= self.batch:
                    written += self.registry.add_metric_rows(self.run_id, pending)
                    pending, self.offset = [], position
        if pending:
            written += self.registry.add_metric_rows(self.run_id, pending)
        self.offset = position
        self.written += written
        return written


def _metric(raw: bytes) -> MetricRow | None:
    try:
        try:
            e = orjson.loads(raw)
        except orjson.JSONDecodeError:
            e = json.loads(raw)  # NaN and Infinity, which orjson does not read
        step, value = e.get("step"), float(e["value"])
        if math.isnan(value):
            return None  # SQLite stores NaN as NULL, which a history row may not hold
        return (str(e["key"]), value, step if type(step) is int else None, e["time"])
    except (KeyError, TypeError, ValueError):
        return None
