"""Deployment targets beyond this machine (`conveyor target add prod --kubernetes ...`)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "platform_targets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("platform_targets")
