"""Run management: experiments, tags, and soft deletion of runs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("experiment", sa.String(200)))
        # when the run was deleted (hidden from listings); None while it is live
        batch.add_column(sa.Column("deleted_at", sa.Float))
    op.create_index("ix_runs_experiment_started", "runs", ["experiment", "started_at", "id"])
    op.create_table(
        "run_tags",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.String(5000), nullable=False),
    )
    op.create_index("ix_run_tags_key_value", "run_tags", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_run_tags_key_value", "run_tags")
    op.drop_table("run_tags")
    op.drop_index("ix_runs_experiment_started", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("experiment")
