"""Metric histories and their summaries: what a run logged, kept cheap to list.

Each metric row of a history stays in ``metrics``; ``metric_summary`` keeps,
per run and key, the count, min, max and the latest value, so listings read
one row per metric however long the history grows. Histories are read only
where they are shown, downsampled to a number of points a chart can draw.
The functions run on a connection the Registry opened, and no query's
parameter count grows with the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.records import MetricRecord

__all__ = ["MetricRow", "MetricSummary", "add_metrics", "add_rows", "history", "summaries"]


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


#: One history row's values in the driver's own parameter style (SQLite's and psycopg's),
#: the run id written in: the rows go to the driver as parsed, not copied to add it.
_VALUES = {"qmark": "('{run}', ?, ?, ?, ?)", "format": "('{run}', %s, %s, %s, %s)"}
_VALUES["pyformat"] = _VALUES["format"]
_INSERT = "INSERT INTO metrics (run_id, key, value, step, timestamp) VALUES "
#: Rows per statement: one statement of many rows cost SQLite a third of a statement a row
#: (1.2 against 3.0 s a million rows); 800 parameters, under every driver's limit.
_ROWS_PER_STATEMENT = 200
#: What a run id written into a statement may hold (ours are hexadecimal).
_RUN_ID = re.compile(r"[0-9a-f]{1,32}")


def add_metrics(conn: sa.Connection, run_id: str, metrics: Iterable[MetricRecord]) -> int:
    """Append ``metrics`` to the run's histories and fold them into its summaries."""
    return add_rows(conn, run_id, [(m.key, m.value, m.step, m.timestamp) for m in metrics])


def add_rows(conn: sa.Connection, run_id: str, rows: list[MetricRow]) -> int:
    """Append metric rows (the recorder's hot path) and fold them into the run's summaries.

    Returns how many rows were written. The caller bounds the batch. The rows
    go to the driver's executemany as tuples: SQLAlchemy's per-row parameter
    processing cost more than the insert itself (about 4 µs a row).
    """
    if not rows:
        return 0
    changed = _fold(rows)
    values = _VALUES.get(conn.dialect.paramstyle)
    if values is None or not _RUN_ID.fullmatch(run_id):
        conn.execute(
            schema.metrics.insert(),
            [
                {"run_id": run_id, "key": k, "value": v, "step": st, "timestamp": t}
                for k, v, st, t in rows
            ],
        )
    else:
        _insert_rows(conn, values.format(run=run_id), rows)
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


def _fold(rows: list[MetricRow]) -> dict[str, MetricSummary]:
    """The summary of ``rows`` per key, by the builtins' C loops (0.05 against 0.4 µs a row).

    A loop's rows come in order: steps and times never going back, the last
    row is the latest; any other history takes a slower pass.
    """
    names = set(map(_KEY, rows))
    groups: dict[str, list[MetricRow]]
    if len(names) == 1:
        groups = {names.pop(): rows}
    else:
        groups = {}
        for row in rows:
            group = groups.get(row[0])
            if group is None:
                groups[row[0]] = [row]
            else:
                group.append(row)
    folded = {}
    for key, group in groups.items():
        values = list(map(_VALUE, group))
        _, value, step, at = _latest(group)
        folded[key] = MetricSummary(key, len(group), min(values), max(values), value, step, at)
    return folded


def _latest(rows: list[MetricRow]) -> MetricRow:
    """The row with the greatest (step, timestamp), none counted as 0; logged later wins a tie."""
    steps, times = list(map(_STEP, rows)), list(map(_TIME, rows))
    if None not in steps and steps == sorted(steps) and times == sorted(times):
        return rows[-1]
    return max(reversed(rows), key=lambda r: (r[2] or 0, r[3]))


_KEY, _VALUE, _STEP, _TIME = (itemgetter(i) for i in range(4))


def _insert_rows(conn: sa.Connection, values: str, rows: list[MetricRow]) -> None:
    """Insert ``rows`` by statements of _ROWS_PER_STATEMENT rows, the rest one by one."""
    n = _ROWS_PER_STATEMENT
    whole = len(rows) // n * n
    if whole:
        conn.exec_driver_sql(
            _INSERT + ",".join([values] * n),
            [tuple(chain.from_iterable(rows[i : i + n])) for i in range(0, whole, n)],
        )
    if whole < len(rows):
        conn.exec_driver_sql(_INSERT + values, rows[whole:])


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

    Every k-th row is kept (k chosen from the count) and the last row always,
    so a chart shows the whole span and the latest value. The database does
    the thinning, so a million steps never cross into Python.
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    m = schema.metrics
    where = (m.c.run_id == run_id) & (m.c.key == key)
    total = conn.execute(sa.select(sa.func.count()).select_from(m).where(where)).scalar_one()
    if total == 0:
        return []
    stride = max(1, -(-total // max_points))
    numbered = (
        sa.select(
            m.c.key,
            m.c.value,
            m.c.step,
            m.c.timestamp,
            sa.func.row_number().over(order_by=(m.c.id,)).label("n"),
        )
        .where(where)
        .subquery()
    )
    # Rows (total-1) - j*stride: the last one always, and evenly spaced before it.
    keep = ((total - numbered.c.n) % stride) == 0
    query = sa.select(numbered).where(keep).order_by(numbered.c.n)
    return [MetricRecord(r.key, r.value, r.step, r.timestamp) for r in conn.execute(query)]


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
