"""The registry's tables, as SQLAlchemy Core metadata (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("command", sa.JSON, nullable=False),
    sa.Column("cwd", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False, index=True),
    sa.Column("ended_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer),
    # commit, branch, dirty, snapshot (digest of the tree manifest), repo-relative cwd
    sa.Column("code", sa.JSON, nullable=False),
    # python, os, cpu, threads, blas, packages (digest), executable
    sa.Column("environment", sa.JSON, nullable=False),
    sa.Column("stdout_digest", sa.String(80)),
    sa.Column("stderr_digest", sa.String(80)),
    sa.Column("reproduces", sa.String(32), index=True),
    sa.Column("error", sa.Text),
)

params = sa.Table(
    "params",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.JSON),
    sa.Column("source", sa.String(10), nullable=False),  # "cli" or "code"
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True),
    sa.Column("key", sa.String(250), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.Integer),
    sa.Column("timestamp", sa.Float, nullable=False),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("role", sa.String(10), primary_key=True),  # "input" or "output"
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(250), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("format", sa.String(40), nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("signature", sa.JSON),
)
