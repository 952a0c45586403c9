"""Moves the metrics a run logs from its journal into the registry while it runs.

The recorder once held every metric in memory until the command ended (0.8 KB
a step: 831 MB for a million steps). The feed reads the run's metric file
(see :mod:`conveyor.repro.journal`) from where it stopped, and writes what it
finds in batches of at most ``batch`` rows, each batch also folding into the
run's metric summaries; so memory stays flat however many steps a run logs,
and the end of a run writes only its tail.

    feed = MetricFeed(registry, run_id, run_dir / METRICS_NAME)
    feed.pump()     # every second or so while the command runs, and once after
"""

from __future__ import annotations

import json
from math import isnan
from pathlib import Path
from typing import Any

from conveyor.store.metrics import MetricRow

__all__ = ["MetricFeed"]


class MetricFeed:
    """Reads new metric lines of one run and writes them to the registry in batches."""

    def __init__(self, registry: Any, run_id: str, path: Path, *, batch: int = 20_000) -> None:
        self.registry, self.run_id, self.path, self.batch = registry, run_id, path, batch
        #: Bytes of the file already read: a complete line is read once.
        self.offset = 0
        self.written = 0
        #: Metric names as written (JSON strings) -> the names.
        self.keys: dict[bytes, str] = {}

    def pump(self) -> int:
        """Write the metrics logged since the last pump; returns how many were written.

        A torn last line (still being written) waits for the next pump. The
        offset moves only past rows the registry accepted, so a pump that fails
        is repeated whole by the next one.
        """
        written = 0
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            fh.seek(self.offset)
            while True:
                rows, size = self._read(fh)
                if rows:
                    written += self.registry.add_metric_rows(self.run_id, rows)
                self.offset += size
                if len(rows) < self.batch:
                    break
        self.written += written
        return written

    def _read(self, fh: Any) -> tuple[list[MetricRow], int]:
        """Up to ``batch`` rows from the complete lines at ``fh``, and the bytes they took."""
        rows: list[MetricRow] = []
        keys, size, limit = self.keys, 0, self.batch
        for raw in fh:
            if raw[-1:] != b"\n":
                break  # torn: read again from its start by the next pump
            size += len(raw)
            try:
                at, number, when, name = raw.split(b"\t", 3)
                key = keys.get(name)
                if key is None:
                    key = keys[name] = str(json.loads(name))
                value = float(number)
                if isnan(value):
                    continue  # NaN: SQLite stores it as NULL, which a history row may not hold
                # A step of 10 digits or more may not fit an INTEGER column (PostgreSQL: 32 bits).
                rows.append((key, value, int(at) if 0 < len(at) < 10 else None, float(when)))
            except ValueError:
                continue  # a line torn by a writer killed mid-file
            if len(rows) >= limit:
                break
        return rows, size
