"""User stream apps with requirements: the environment staged for them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("platform_stream_apps", sa.Column("droplet", sa.JSON))


def downgrade() -> None:
    op.drop_column("platform_stream_apps", "droplet")
