"""Metric summaries (count, min, max, latest per run and key) and the indexes listings page by."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "metric_summary",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("min", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("timestamp", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_run_key", "metrics", ["run_id", "key", "id"])
    # Its first column serves what this one did; a step now updates one index, not two.
    op.drop_index("ix_metrics_run_id", "metrics")
    op.create_index("ix_runs_started_id", "runs", ["started_at", "id"])
    op.create_index("ix_runs_status_started", "runs", ["status", "started_at", "id"])
    # Summaries of the histories already recorded: the latest row is the one with the
    # greatest (step, timestamp, id), as the listings chose it before.
    op.execute(
        """
        INSERT INTO metric_summary (run_id, key, count, min, max, value, step, timestamp)
        SELECT g.run_id, g.key, g.n, g.lo, g.hi, last.value, last.step, last.timestamp
        FROM (
            SELECT run_id, key, COUNT(*) AS n, MIN(value) AS lo, MAX(value) AS hi
            FROM metrics WHERE run_id IS NOT NULL GROUP BY run_id, key
        ) AS g
        JOIN metrics AS last ON last.id = (
            SELECT m.id FROM metrics AS m
            WHERE m.run_id = g.run_id AND m.key = g.key
            ORDER BY COALESCE(m.step, 0) DESC, m.timestamp DESC, m.id DESC
            LIMIT 1
        )
        """
    )


def downgrade() -> None:
    op.drop_index("ix_runs_status_started", "runs")
    op.drop_index("ix_runs_started_id", "runs")
    op.create_index("ix_metrics_run_id", "metrics", ["run_id"])
    op.drop_index("ix_metrics_run_key", "metrics")
    op.drop_table("metric_summary")
