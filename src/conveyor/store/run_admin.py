"""What a user changes on a recorded run: its tags, and whether it is deleted.

A finished run's record is immutable; tags and deletion are about the run,
not of it, so they may change at any time. Deletion is soft: the run is
hidden from listings and searches and can be restored, until ``artifacts gc``
purges it (:func:`purge_deleted`), after which its artifacts go with the
others nothing uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import sqlalchemy as sa

from conveyor.errors import UsageError
from conveyor.store import schema

__all__ = [
    "check_tag",
    "experiments",
    "mark_deleted",
    "purge_deleted",
    "remove_tags",
    "set_tags",
    "tags_of",
]

_MAX_KEY = 250
_MAX_VALUE = 5000


def check_tag(key: str, value: str = "") -> None:
    """UsageError naming the tag unless its key and value can be stored and searched."""
    if not key or len(key) > _MAX_KEY or any(not c.isprintable() or c == "=" for c in key):
        raise UsageError(
            f"{key!r} is not a tag name: 1 to {_MAX_KEY} printable characters without '='"
        )
    if len(value) > _MAX_VALUE or any(not c.isprintable() for c in value):
        raise UsageError(
            f"the value of tag {key!r} must be at most {_MAX_VALUE} printable characters"
        )


def tags_of(conn: sa.Connection, run_id: str) -> dict[str, str]:
    t = schema.run_tags
    query = sa.select(t.c.key, t.c.value).where(t.c.run_id == run_id).order_by(t.c.key)
    return {row.key: row.value for row in conn.execute(query)}


def set_tags(conn: sa.Connection, run_id: str, tags: Mapping[str, str]) -> None:
    """Set (or replace) each tag of ``tags`` on the run."""
    for key, value in tags.items():
        check_tag(key, value)
    t = schema.run_tags
    for key, value in tags.items():
        conn.execute(t.delete().where((t.c.run_id == run_id) & (t.c.key == key)))
        conn.execute(t.insert().values(run_id=run_id, key=key, value=value))


def remove_tags(conn: sa.Connection, run_id: str, keys: list[str]) -> None:
    """Remove the named tags; UsageError naming any the run does not have (none removed)."""
    t = schema.run_tags
    present = set(tags_of(conn, run_id))
    missing = [k for k in keys if k not in present]
    if missing:
        known = ", ".join(sorted(present)) or "none"
        raise UsageError(
            f"run {run_id[:12]} has no tag {', '.join(map(repr, missing))} (its tags: {known})"
        )
    conn.execute(t.delete().where((t.c.run_id == run_id) & (t.c.key.in_(keys))))


def mark_deleted(conn: sa.Connection, run_id: str, *, deleted: bool) -> None:
    """Delete (hide) or restore the run; UsageError if it already is so."""
    t = schema.runs
    current = conn.execute(sa.select(t.c.deleted_at).where(t.c.id == run_id)).scalar()
    if deleted and current is not None:
        raise UsageError(
            f"run {run_id[:12]} is already deleted",
            hint=f"Restore it with: conveyor runs restore {run_id[:12]}",
        )
    if not deleted and current is None:
        raise UsageError(f"run {run_id[:12]} is not deleted; there is nothing to restore")
    conn.execute(
        t.update().where(t.c.id == run_id).values(deleted_at=time.time() if deleted else None)
    )


def experiments(conn: sa.Connection, limit: int) -> list[str]:
    t = schema.runs
    query = (
        sa.select(t.c.experiment)
        .where(t.c.experiment.is_not(None) & t.c.deleted_at.is_(None))
        .distinct()
        .order_by(t.c.experiment)
        .limit(limit)
    )
    return [str(name) for name in conn.execute(query).scalars()]


def purge_deleted(conn: sa.Connection) -> int:
    """Remove every deleted run for good (its params, metrics, files and tags go with it)."""
    t = schema.runs
    gone = sa.select(t.c.id).where(t.c.deleted_at.is_not(None))
    cache = schema.task_step_cache
    conn.execute(cache.delete().where(cache.c.run_id.in_(gone)))
    return conn.execute(t.delete().where(t.c.deleted_at.is_not(None))).rowcount
