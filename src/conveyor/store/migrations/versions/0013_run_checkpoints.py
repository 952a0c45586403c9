"""Checkpoints of the live runs' positions: a numbered page costs the same at any depth.

``run_checkpoints`` holds every 1,024th live run counted from the oldest by
(started_at, id) and its position; store/checkpoints.py fills it on the first
deep numbered page and skips from the nearest one. New runs arrive at the
newest end and move no position below them, so the checkpoints stay right;
any other write that moves one (a run inserted older than the newest
checkpoint, a delete, restore or purge of such a run, a change of its start)
empties the table in the writer's own transaction, by the triggers below, so a
committed state never holds a wrong checkpoint whoever writes the row.

A later migration that rebuilds ``runs`` on SQLite (``batch_alter_table``
copies the table) drops these triggers with the old table and must create
them again (``create_triggers``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"

#: A write moves a position only if it changes a run's key or whether it is live.
_MOVES = (
    "(OLD.started_at IS DISTINCT FROM NEW.started_at OR OLD.id IS DISTINCT FROM NEW.id "
    "OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))"
)

_PG_FUNCTION = """
CREATE FUNCTION runs_checkpoints_stale() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM run_checkpoints;
        RETURN NULL;
    END IF;
    SELECT started_at, id INTO newest FROM run_checkpoints ORDER BY rank DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.deleted_at IS NULL
            AND (OLD.started_at, OLD.id) <= (newest.started_at, newest.id) THEN
        DELETE FROM run_checkpoints;
    ELSIF TG_OP IN ('UPDATE', 'INSERT') AND NEW.deleted_at IS NULL
            AND (NEW.started_at, NEW.id) <= (newest.started_at, newest.id) THEN
        DELETE FROM run_checkpoints;
    END IF;
    RETURN NULL;
END
$$
"""

_PG_TRIGGERS = {
    "runs_checkpoints_insert": "AFTER INSERT ON runs FOR EACH ROW",
    "runs_checkpoints_update": (
        f"AFTER UPDATE OF started_at, id, deleted_at ON runs FOR EACH ROW WHEN {_MOVES}"
    ),
    "runs_checkpoints_delete": "AFTER DELETE ON runs FOR EACH ROW",
    "runs_checkpoints_truncate": "AFTER TRUNCATE ON runs FOR EACH STATEMENT",
}

_NEWEST = "(SELECT started_at, id FROM run_checkpoints ORDER BY rank DESC LIMIT 1)"
_SQLITE_TRIGGERS = {
    "runs_checkpoints_insert": (
        "AFTER INSERT ON runs WHEN NEW.deleted_at IS NULL "
        f"AND (NEW.started_at, NEW.id) <= {_NEWEST}"
    ),
    "runs_checkpoints_update": (
        "AFTER UPDATE OF started_at, id, deleted_at ON runs WHEN "
        f"{_MOVES.replace('IS DISTINCT FROM', 'IS NOT')} AND ("
        f"(OLD.deleted_at IS NULL AND (OLD.started_at, OLD.id) <= {_NEWEST}) OR "
        f"(NEW.deleted_at IS NULL AND (NEW.started_at, NEW.id) <= {_NEWEST}))"
    ),
    "runs_checkpoints_delete": (
        "AFTER DELETE ON runs WHEN OLD.deleted_at IS NULL "
        f"AND (OLD.started_at, OLD.id) <= {_NEWEST}"
    ),
}


def create_triggers() -> None:
    """The triggers that empty ``run_checkpoints`` when a write moves a checkpoint's position."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for name, when in _PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION runs_checkpoints_stale()")
        return
    for name, when in _SQLITE_TRIGGERS.items():
        # Constant text: the names and conditions above, no input.
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN DELETE FROM run_checkpoints; END")  # noqa: S608


def upgrade() -> None:
    op.create_table(
        "run_checkpoints",
        sa.Column("rank", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
    )
    create_triggers()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _PG_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (" ON runs" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION runs_checkpoints_stale()")
    op.drop_table("run_checkpoints")
