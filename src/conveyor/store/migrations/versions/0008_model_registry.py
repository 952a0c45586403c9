"""The model registry: named models, immutable versions, moving aliases; run models' trust."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("tags", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column(
            "model",
            sa.String(100),
            sa.ForeignKey("registered_models.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("signature", sa.JSON),
        sa.Column("run_id", sa.String(32), index=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("filename", sa.String(250), nullable=False),
        sa.Column("trusted_types", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "digest", name="uq_model_versions_digest"),
    )
    op.create_table(
        "model_aliases",
        sa.Column(
            "model",
            sa.String(100),
            sa.ForeignKey("registered_models.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    # The exact types a skops file saved by conveyor.save_model needs (trust by provenance).
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("trusted_types", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("trusted_types")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
