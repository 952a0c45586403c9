"""Metric histories and their summaries: what a run logged, kept cheap to list.

Each value of a history stays in ``metric_chunks`` (packed, a chunk of
consecutive values a row); ``metric_summary`` keeps,
per run and key, the count, min, max and the latest value, so listings read
one row per metric however long the history grows. Histories are read only
where they are shown, downsampled to a number of points a chart can draw.
The functions run on a connection the Registry opened, and no query's
parameter count grows with the data.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.records import MetricRecord

__all__ = [
    "CHUNK",
    "MetricRow",
    "MetricSummary",
    "add_metrics",
    "add_rows",
    "history",
    "pack",
    "summaries",
    "unpack",
]


@dataclass
class MetricSummary:
    """One metric of one run: how often it was logged, its range and its latest value."""

    key: str
    count: int
    min: float
    max: float
    #: The value with the greatest (step, timestamp); logged later wins a tie.
    value: float
    step: int | None
    timestamp: float

    def latest(self) -> MetricRecord:
        return MetricRecord(self.key, self.value, self.step, self.timestamp)

    def add(self, m: MetricRecord) -> None:
        self.count += 1
        self.min, self.max = min(self.min, m.value), max(self.max, m.value)
        if (m.step or 0, m.timestamp) >= (self.step or 0, self.timestamp):
            self.value, self.step, self.timestamp = m.value, m.step, m.timestamp

    @classmethod
    def first(cls, m: MetricRecord) -> MetricSummary:
        return cls(m.key, 1, m.value, m.value, m.value, m.step, m.timestamp)


#: One metric row as the recorder parses it: key, value, step, timestamp.
MetricRow = tuple[str, float, "int | None", float]


#: A chunk holds at most this many values of one key (the recorder writes up to 20,000 a batch).
CHUNK = 20_000
#: The step of a value logged without one, in a chunk.
_NO_STEP = -(2**63)


def add_metrics(conn: sa.Connection, run_id: str, metrics: Iterable[MetricRecord]) -> int:
    """Append ``metrics`` to the run's histories and fold them into its summaries."""
    return add_rows(conn, run_id, [(m.key, m.value, m.step, m.timestamp) for m in metrics])


def add_rows(conn: sa.Connection, run_id: str, rows: list[MetricRow]) -> int:
    """Append metric rows (the recorder's hot path) and fold them into the run's summaries.

    Returns how many rows were written. The caller bounds the batch. Each
    key's rows become one chunk (see ``schema.metric_chunks``): a row a value
    cost 1 s a million values in SQLite alone, packing and inserting chunks
    0.1 s.
    """
    if not rows:
        return 0
    groups = _groups(rows)
    changed = {key: _fold(key, group) for key, group in groups.items()}
    _add_chunks(conn, run_id, groups)
    for old in summaries(conn, run_id):
        new = changed.get(old.key)
        if new is None:
            continue
        last = new if (new.step or 0, new.timestamp) >= (old.step or 0, old.timestamp) else old
        changed[old.key] = MetricSummary(
            old.key,
            old.count + new.count,
            min(old.min, new.min),
            max(old.max, new.max),
            last.value,
            last.step,
            last.timestamp,
        )
    # One statement per key (executemany): a run has a handful of metric names.
    table = schema.metric_summary
    conn.execute(
        table.delete().where((table.c.run_id == run_id) & (table.c.key == sa.bindparam("k"))),
        [{"k": k} for k in changed],
    )
    conn.execute(table.insert(), [{"run_id": run_id, **vars(s)} for s in changed.values()])
    return len(rows)


def _groups(rows: list[MetricRow]) -> dict[str, list[MetricRow]]:
    """``rows`` by key, in their order; one key (a loop's usual batch) costs no loop a row."""
    names = set(map(_KEY, rows))
    if len(names) == 1:
        return {names.pop(): rows}
    groups: dict[str, list[MetricRow]] = {}
    for row in rows:
        group = groups.get(row[0])
        if group is None:
            groups[row[0]] = [row]
        else:
            group.append(row)
    return groups


def _fold(key: str, rows: list[MetricRow]) -> MetricSummary:
    """The summary of one key's ``rows``, by the builtins' C loops (0.05 against 0.4 µs a row).

    A loop's rows come in order, steps and times never going back: the last
    row is the latest; any other history takes a slower pass.
    """
    values = list(map(_VALUE, rows))
    steps, times = list(map(_STEP, rows)), list(map(_TIME, rows))
    if None not in steps and steps == sorted(steps) and times == sorted(times):
        last = rows[-1]
    else:
        last = max(reversed(rows), key=lambda r: (r[2] or 0, r[3]))
    return MetricSummary(key, len(rows), min(values), max(values), last[1], last[2], last[3])


_KEY, _VALUE, _STEP, _TIME = (itemgetter(i) for i in range(4))


def _add_chunks(conn: sa.Connection, run_id: str, groups: dict[str, list[MetricRow]]) -> None:
    """Append each key's rows to its history as chunks of at most CHUNK values."""
    table = schema.metric_chunks
    last: dict[str, int] = {
        key: seq
        for key, seq in conn.execute(
            sa.select(table.c.key, sa.func.max(table.c.seq))
            .where(table.c.run_id == run_id)
            .group_by(table.c.key)
        )
    }
    chunks = []
    for key, rows in groups.items():
        seq = last.get(key, -1)
        for start in range(0, len(rows), CHUNK):
            seq += 1
            part = rows[start : start + CHUNK]
            chunks.append(
                {"run_id": run_id, "key": key, "seq": seq, "count": len(part), "data": pack(part)}
            )
    conn.execute(table.insert(), chunks)


def pack(rows: list[MetricRow]) -> bytes:
    """One chunk's bytes: the steps, then the values, then the times of ``rows``."""
    steps = list(map(_STEP, rows))
    if None in steps:
        steps = [_NO_STEP if s is None else s for s in steps]
    n = len(rows)
    return struct.pack(f"<{n}q{n}d{n}d", *steps, *map(_VALUE, rows), *map(_TIME, rows))


def unpack(key: str, data: bytes, count: int, picked: range) -> list[MetricRecord]:
    """The values at the ``picked`` positions of a chunk of ``count`` values.

    Only the picked values become Python objects: thinning a million values to
    500 points reads 0.5 s slower when whole chunks are unpacked.
    """
    if sys.byteorder == "little":
        view = memoryview(data)
        pick = slice(picked.start, picked.stop, picked.step)
        steps = view[: 8 * count].cast("q")[pick].tolist()
        values = view[8 * count : 16 * count].cast("d")[pick].tolist()
        times = view[16 * count : 24 * count].cast("d")[pick].tolist()
    else:
        steps = [struct.unpack_from("<q", data, 8 * i)[0] for i in picked]
        values = [struct.unpack_from("<d", data, 8 * (count + i))[0] for i in picked]
        times = [struct.unpack_from("<d", data, 8 * (2 * count + i))[0] for i in picked]
    return [
        MetricRecord(key, v, None if s == _NO_STEP else s, t)
        for s, v, t in zip(steps, values, times, strict=True)
    ]


def summaries(conn: sa.Connection, run_id: str) -> list[MetricSummary]:
    """Every metric summary of one run, by key."""
    table = schema.metric_summary
    return [
        _summary(r._mapping)
        for r in conn.execute(
            sa.select(table).where(table.c.run_id == run_id).order_by(table.c.key)
        )
    ]


def page_summaries(conn: sa.Connection, page: sa.Select[Any]) -> dict[str, list[MetricSummary]]:
    """The summaries of the runs a listing's ``page`` subquery selects, by run id."""
    table = schema.metric_summary
    found: dict[str, list[MetricSummary]] = {}
    for r in conn.execute(
        sa.select(table).where(table.c.run_id.in_(page)).order_by(table.c.run_id, table.c.key)
    ):
        found.setdefault(r.run_id, []).append(_summary(r._mapping))
    return found


def history(conn: sa.Connection, run_id: str, key: str, max_points: int) -> list[MetricRecord]:
    """The history of one metric in logging order, thinned evenly to at most ``max_points``.

    Every k-th value is kept (k chosen from the count) and the last one always,
    so a chart shows the whole span and the latest value. Chunks are read as a
    stream, so a million steps never sit in memory at once.
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    c = schema.metric_chunks
    where = (c.c.run_id == run_id) & (c.c.key == key)
    total = conn.execute(sa.select(sa.func.sum(c.c.count)).where(where)).scalar() or 0
    if total == 0:
        return []
    stride = max(1, -(-total // max_points))
    found: list[MetricRecord] = []
    before = 0  # values in the chunks before this one
    chunks = sa.select(c.c.count, c.c.data).where(where).order_by(c.c.seq)
    for count, data in conn.execute(chunks.execution_options(yield_per=16)):
        # Positions (total-1) - j*stride: the last one always, and evenly spaced before it.
        first = (total - 1 - before) % stride
        if first < count:
            found += unpack(key, data, count, range(first, count, stride))
        before += count
    return found


def _summary(row: sa.RowMapping) -> MetricSummary:
    return MetricSummary(
        row["key"],
        row["count"],
        row["min"],
        row["max"],
        row["value"],
        row["step"],
        row["timestamp"],
    )
