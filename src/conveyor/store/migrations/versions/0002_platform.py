"""The platform's desired state: apps, revisions, events, services, started processes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "platform_apps",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "platform_revisions",
        sa.Column(
            "app",
            sa.String(63),
            sa.ForeignKey("platform_apps.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("files", sa.JSON),
        sa.Column("droplet", sa.JSON),
    )
    op.create_table(
        "platform_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(63), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("instance", sa.Integer),
        sa.Column("revision", sa.Integer),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_platform_events_app", "platform_events", ["app"])
    op.create_table(
        "platform_services",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("credentials", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "platform_processes",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("start_ticks", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "platform_processes",
        "platform_services",
        "platform_events",
        "platform_revisions",
        "platform_apps",
    ):
        op.drop_table(table)
