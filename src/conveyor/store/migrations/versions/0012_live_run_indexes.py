"""Partial indexes of live runs: a numbered page skips its runs in the index alone.

Every listing filters on ``deleted_at`` (live runs, or deleted ones with
``--deleted``), which no index held, so skipping to page N read each skipped
run's row. Indexes restricted to live runs answer the skip from the index:
an index-only scan on PostgreSQL (once vacuum has marked the pages visible),
a covering index on SQLite. Deleted runs get their own small index; the full
indexes by start time only served these listings and go.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"

_LIVE = sa.text("deleted_at IS NULL")
_DELETED = sa.text("deleted_at IS NOT NULL")

#: name -> (columns, predicate) of the indexes this migration creates. Each ends with
#: deleted_at, which its predicate already fixes: SQLite (3.40) uses a partial index as a
#: covering one only if it holds every column the query names, the predicate's too.
_CREATED = {
    "ix_runs_live_started": (["started_at", "id", "deleted_at"], _LIVE),
    "ix_runs_live_status": (["status", "started_at", "id", "deleted_at"], _LIVE),
    "ix_runs_live_experiment": (["experiment", "started_at", "id", "deleted_at"], _LIVE),
    "ix_runs_deleted_started": (["started_at", "id", "deleted_at"], _DELETED),
}

#: name -> columns of the full indexes the ones above replace (0001, 0007, 0010).
_REPLACED = {
    "ix_runs_started_at": ["started_at"],
    "ix_runs_started_id": ["started_at", "id"],
    "ix_runs_status_started": ["status", "started_at", "id"],
    "ix_runs_experiment_started": ["experiment", "started_at", "id"],
}


def upgrade() -> None:
    for name, (columns, where) in _CREATED.items():
        op.create_index(name, "runs", columns, postgresql_where=where, sqlite_where=where)
    for name in _REPLACED:
        op.drop_index(name, "runs")
    if op.get_bind().dialect.name == "postgresql":
        # An index-only scan reads a row's page only while vacuum has not marked it all-visible.
        # By default autovacuum comes after 20 % of the table is new: at a million runs, the
        # 200,000 newest (the first pages) would be read from the table on every deep skip.
        op.execute(
            "ALTER TABLE runs SET (autovacuum_vacuum_insert_scale_factor = 0.01, "
            "autovacuum_vacuum_scale_factor = 0.01)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE runs RESET (autovacuum_vacuum_insert_scale_factor, "
            "autovacuum_vacuum_scale_factor)"
        )
    for name, columns in _REPLACED.items():
        op.create_index(name, "runs", columns)
    for name in _CREATED:
        op.drop_index(name, "runs")
