"""Metric histories in packed chunks (one row per up to 20,000 values) instead of a row a value.

A million values cost SQLite about 1 s of CPU to insert as rows (table and
index); as chunks 0.05 s. The histories recorded so far are moved over key by
key in logging order, a chunk at a time, so memory stays bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

CHUNK = 20_000
NO_STEP = -(2**63)


def upgrade() -> None:
    op.create_table(
        "metric_chunks",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    chunks = sa.table(
        "metric_chunks",
        sa.column("run_id"),
        sa.column("key"),
        sa.column("seq"),
        sa.column("count"),
        sa.column("data"),
    )
    # Read as a stream (a server-side cursor on PostgreSQL): memory holds a chunk.
    rows = bind.execute(
        sa.text(
            "SELECT run_id, key, value, step, timestamp FROM metrics "
            "WHERE run_id IS NOT NULL ORDER BY run_id, key, id"
        ).execution_options(yield_per=CHUNK)
    )
    for run_id, key, seq, part in _chunks(rows):
        steps = [NO_STEP if r[3] is None else r[3] for r in part]
        n = len(part)
        data = struct.pack(f"<{n}q{n}d{n}d", *steps, *(r[2] for r in part), *(r[4] for r in part))
        bind.execute(
            chunks.insert(),
            {"run_id": run_id, "key": key, "seq": seq, "count": n, "data": data},
        )
    op.drop_index("ix_metrics_run_key", "metrics")
    op.drop_table("metrics")


def _chunks(rows: Any) -> Iterator[tuple[str, str, int, list[Sequence[Any]]]]:
    """(run id, key, seq, rows) of at most CHUNK rows, from rows ordered by run, key, id."""
    part: list[Sequence[Any]] = []
    current: tuple[str, str] | None = None
    seq = 0
    for row in rows:
        at = (row[0], row[1])
        if part and (at != current or len(part) == CHUNK):
            assert current is not None
            yield current[0], current[1], seq, part
            seq = seq + 1 if at == current else 0
            part = []
        current = at
        part.append(row)
    if part and current is not None:
        yield current[0], current[1], seq, part


def downgrade() -> None:
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE")),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("timestamp", sa.Float, nullable=False),
    )
    op.create_index("ix_metrics_run_key", "metrics", ["run_id", "key", "id"])
    bind = op.get_bind()
    metrics = sa.table(
        "metrics",
        sa.column("run_id"),
        sa.column("key"),
        sa.column("value"),
        sa.column("step"),
        sa.column("timestamp"),
    )
    found = bind.execute(
        sa.text(
            "SELECT run_id, key, count, data FROM metric_chunks ORDER BY run_id, key, seq"
        ).execution_options(yield_per=16)
    )
    for run_id, key, n, data in found:
        steps = struct.unpack_from(f"<{n}q", data)
        values = struct.unpack_from(f"<{n}d", data, 8 * n)
        times = struct.unpack_from(f"<{n}d", data, 16 * n)
        bind.execute(
            metrics.insert(),
            [
                {
                    "run_id": run_id,
                    "key": key,
                    "value": v,
                    "step": None if s == NO_STEP else s,
                    "timestamp": t,
                }
                for s, v, t in zip(steps, values, times, strict=True)
            ],
        )
    op.drop_table("metric_chunks")
