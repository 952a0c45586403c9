"""User stream apps registered by name."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "platform_stream_apps",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("files", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("platform_stream_apps")
