"""Composed tasks: task apps, definitions, executions, the step cache and schedules."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "task_apps",
        sa.Column("name", sa.String(42), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_definitions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_executions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("task", sa.String(100), nullable=False, index=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_step_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("exit_status", sa.String(100)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_schedules",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_schedules")
    op.drop_table("task_step_cache")
    op.drop_table("task_executions")
    op.drop_table("task_definitions")
    op.drop_table("task_apps")
