"""Where a numbered page of the live runs starts, in the same few steps at any depth.

A page number counts from the newest run, so finding page N means counting
the live runs before it: one index step per run (250 ms at a million on
PostgreSQL). ``run_checkpoints`` (migration 0013) remembers every
``EVERY``-th live run counted from the *oldest* by (started_at, id), with its
position: new runs arrive at the newest end and move none of them. Page N
is then ``total - offset`` from the oldest; the nearest checkpoint below or
above it is at most ``EVERY / 2`` runs away, and the live-run total is the
newest checkpoint's position plus the short tail of runs after it.

    key = checkpoints.locate(conn, offset=990_000)   # (started_at, id) of the page's first run
    # raises Stale when the checkpoints are missing: build(conn) in a transaction of its own

Triggers (0013) empty the table in the writer's own transaction whenever a
write moves a checkpoint's position (a run inserted older than the newest
checkpoint; a delete, restore or purge below it). ``build`` fills it again in
one pass over the index, holding the lock writers of ``runs`` need, so no
write lands between the pass and its commit; any committed state thus holds
right checkpoints or none. Each skip below names its checkpoint in the same
statement, so a checkpoint emptied meanwhile finds no run instead of a wrong one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from conveyor.errors import StoreError
from conveyor.store import schema

__all__ = ["DIRECT", "EVERY", "Stale", "build", "locate"]

#: One checkpoint every EVERY live runs: a skip from the nearest is at most EVERY / 2 runs.
EVERY = 1024
#: Offsets below this skip from the newest run directly (2-3 ms on PostgreSQL), no checkpoints.
DIRECT = 10_000
#: Runs after the newest checkpoint counted at most; past it ``build`` extends the checkpoints.
TAIL = 8 * EVERY
#: How long ``build`` waits for writers of ``runs`` to commit before giving up (PostgreSQL).
LOCK_TIMEOUT = "3s"


#: A part of a key: a value, or the checkpoint's read by the same statement.
_Key = float | str | sa.ScalarSelect[Any]


class Stale(StoreError):
    """The checkpoints are missing, or too far behind the newest run: ``build`` them first."""


def _live() -> sa.ColumnElement[bool]:
    return schema.runs.c.deleted_at.is_(None)


def _newest(conn: sa.Connection) -> tuple[int, float, str] | None:
    """The newest checkpoint's (rank, started_at, id)."""
    cp = schema.run_checkpoints
    query = sa.select(cp.c.rank, cp.c.started_at, cp.c.id).order_by(cp.c.rank.desc()).limit(1)
    row = conn.execute(query).first()
    return None if row is None else (int(row.rank), row.started_at, row.id)


def _after(started: _Key, run_id: _Key, *, inclusive: bool = False) -> sa.ColumnElement[bool]:
    """Runs after the key (started_at, id) in ascending order, as one index range."""
    t = schema.runs
    tie = t.c.id >= run_id if inclusive else t.c.id > run_id
    return (t.c.started_at >= started) & ((t.c.started_at > started) | tie)


def _before(started: _Key, run_id: _Key) -> sa.ColumnElement[bool]:
    """Runs at or before the key (started_at, id), as one index range."""
    t = schema.runs
    return (t.c.started_at <= started) & ((t.c.started_at < started) | (t.c.id <= run_id))


def _count(conn: sa.Connection, where: sa.ColumnElement[bool], at_most: int) -> int:
    t = schema.runs
    walk = (
        sa.select(t.c.id)
        .where(_live(), where)
        .order_by(t.c.started_at, t.c.id)
        .limit(at_most)
        .subquery()
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(walk)).scalar_one())


def locate(conn: sa.Connection, offset: int) -> tuple[float, str] | None:
    """The key of the live run ``offset`` runs from the newest, None past the last run.

    Raises Stale when the checkpoints must be built (or extended) first, or
    vanished while this read ran (a writer moved them).
    """
    newest = _newest(conn)
    if newest is None:
        newest_rank, tail = 0, _count(conn, sa.true(), EVERY)
        if tail == EVERY:  # else fewer live runs than one checkpoint's worth: none are built
            raise Stale("no checkpoints")
    else:
        newest_rank = newest[0]
        tail = _count(conn, _after(*newest[1:]), TAIL)
        if tail >= TAIL:
            raise Stale(f"{tail} runs after the newest checkpoint")
    rank = newest_rank + tail - offset  # from the oldest, 1 the oldest live run
    if rank < 1:
        return None
    t = schema.runs
    key = (t.c.started_at, t.c.id)
    below = min(rank // EVERY * EVERY, newest_rank)
    above = below + EVERY
    # The nearest start: the newest run, a checkpoint below or above, or the oldest run.
    steps = {"newest": offset, "below": rank - below if below else rank - 1}
    if above <= newest_rank:
        steps["above"] = above - rank
    start = min(steps, key=steps.__getitem__)
    if start == "newest":
        query = sa.select(*key).where(_live()).order_by(t.c.started_at.desc(), t.c.id.desc())
    elif start == "above":
        query = sa.select(*key).where(_live(), _before(*_mark(above)))
        query = query.order_by(t.c.started_at.desc(), t.c.id.desc())
    else:
        query = sa.select(*key).where(_live()).order_by(*key)
        if below:
            query = query.where(_after(*_mark(below), inclusive=True))
    found = conn.execute(query.offset(steps[start]).limit(1)).first()
    if found is None:
        if start == "above" or (start == "below" and below):
            # A skip from a checkpoint that a writer removed meanwhile finds nothing.
            raise Stale("the checkpoints changed during the read")
        return None
    return found.started_at, found.id


def _mark(rank: int) -> tuple[sa.ScalarSelect[Any], sa.ScalarSelect[Any]]:
    """The key of the checkpoint at ``rank``, read by the skip's own statement."""
    cp = schema.run_checkpoints
    at = cp.c.rank == rank
    return (
        sa.select(cp.c.started_at).where(at).scalar_subquery(),
        sa.select(cp.c.id).where(at).scalar_subquery(),
    )


def build(conn: sa.Connection) -> None:
    """Fill the checkpoints from the newest one on (all of them when none): one index walk.

    Call it first in a transaction of its own: it takes the lock every
    writer of ``runs`` needs (SHARE ROW EXCLUSIVE on PostgreSQL, SQLite's
    write lock by BEGIN IMMEDIATE), so a concurrent build waits and then
    finds nothing left to do, and no write lands between the pass and its
    commit. Raises sqlalchemy's OperationalError if writers hold the table
    longer than LOCK_TIMEOUT.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        conn.exec_driver_sql("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    newest = _newest(conn)
    base, started, run_id = (0, None, None) if newest is None else newest
    start = "" if newest is None else _AFTER.format(started=":started", run_id=":run_id")
    after = _AFTER.format(started="h.started_at", run_id="h.id")
    if conn.dialect.name == "postgresql":
        statement = _PG_BUILD.format(start=start, after=after)
    else:
        hop = _SQLITE_HOP.format
        statement = _SQLITE_BUILD.format(
            first=hop(column="started_at", where=start) + ", " + hop(column="id", where=start),
            next=hop(column="started_at", where=after) + ", " + hop(column="id", where=after),
        )
    values = {"rank": base + EVERY, "every": EVERY, "skip": EVERY - 1}
    conn.execute(sa.text(statement), {**values, "started": started, "run_id": run_id})


# The build hops EVERY runs at a time from the last checkpoint's key, as a skip does, in
# one recursive statement: 0.23-0.27 s at a million runs on PostgreSQL (LATERAL), 0.32 s on
# SQLite (two scalar subqueries a hop: it has no LATERAL). Numbering every run by
# row_number() took 0.4-0.5 s and 0.8-1.05 s, hops from Python 0.65-0.7 s and 0.36-0.49 s.
# Each key condition bounds an index range; an OR with "no key yet" made it a scan (100 s).
# The statements are put together from the constant fragments below, no input.
_AFTER = "AND r.started_at >= {started} AND (r.started_at > {started} OR r.id > {run_id})"
_PG_BUILD = """
WITH RECURSIVE hops(rank, started_at, id) AS (
    (SELECT CAST(:rank AS BIGINT), r.started_at, r.id FROM runs r
     WHERE r.deleted_at IS NULL {start}
     ORDER BY r.started_at, r.id LIMIT 1 OFFSET :skip)
    UNION ALL
    SELECT h.rank + :every, n.started_at, n.id FROM hops h CROSS JOIN LATERAL (
        SELECT r.started_at, r.id FROM runs r
        WHERE r.deleted_at IS NULL {after}
        ORDER BY r.started_at, r.id LIMIT 1 OFFSET :skip) n
)
INSERT INTO run_checkpoints (rank, started_at, id) SELECT rank, started_at, id FROM hops
"""
_SQLITE_HOP = """(SELECT r.{column} FROM runs r WHERE r.deleted_at IS NULL {where}
    ORDER BY r.started_at, r.id LIMIT 1 OFFSET :skip)"""
_SQLITE_BUILD = """
WITH RECURSIVE hops(rank, started_at, id) AS (
    SELECT :rank, {first}
    UNION ALL
    SELECT h.rank + :every, {next} FROM hops h WHERE h.started_at IS NOT NULL
)
INSERT INTO run_checkpoints (rank, started_at, id)
SELECT rank, started_at, id FROM hops WHERE started_at IS NOT NULL
"""
