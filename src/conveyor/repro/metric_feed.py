"""Moves the metrics a run logs from its journal into the registry while it runs.

The recorder once held every metric in memory until the command ended (0.8 KB
a step: 831 MB for a million steps). The feed reads the run's metric file
(see :mod:`conveyor.repro.metric_journal`) from where it stopped, and writes what it
finds in batches of at most ``batch`` rows, each batch also folding into the
run's metric summaries; so memory stays flat however many steps a run logs,
and the end of a run writes only its tail.

    feed = MetricFeed(registry, run_id, run_dir / METRICS_NAME)
    feed.pump()     # every second or so while the command runs, and once after
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.repro.metric_journal import RECORD, read_metric_frames
from conveyor.store.metrics import MetricRow

__all__ = ["MetricFeed"]


class MetricFeed:
    """Reads new metric frames of one run and writes their values to the registry in batches."""

    def __init__(self, registry: Any, run_id: str, path: Path, *, batch: int = 20_000) -> None:
        self.registry, self.run_id, self.path, self.batch = registry, run_id, path, batch
        #: Bytes of the file already read: a frame is read once.
        self.offset = 0
        self.written = 0

    def pump(self) -> int:
        """Write the metrics logged since the last pump; returns how many were written.

        A frame still being written waits for the next pump. The offset moves
        only past rows the registry accepted, so a pump that fails is repeated
        whole by the next one.
        """
        written = 0
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            fh.seek(self.offset)
            pending = b""
            while chunk := fh.read(self.batch * RECORD.size):
                data = pending + chunk if pending else chunk
                frames, used = read_metric_frames(data)
                rows = [row for names, records in frames for row in _rows(names, records)]
                if rows:
                    written += self.registry.add_metric_rows(self.run_id, rows)
                self.offset += used
                pending = data[used:]
        self.written += written
        return written


def _rows(names: list[str], records: bytes) -> list[MetricRow]:
    """The rows of one frame; NaN is left out (SQLite stores it as NULL, which a row may not
    hold), and a step of 10 digits or more is none (PostgreSQL's INTEGER has 32 bits)."""
    return [
        (names[k], value, step if -_STEP_LIMIT < step < _STEP_LIMIT else None, at)
        for step, value, at, k in RECORD.iter_unpack(records)
        if value == value  # noqa: PLR0124 - false for NaN only, and no call a row
    ]


_STEP_LIMIT = 1_000_000_000
