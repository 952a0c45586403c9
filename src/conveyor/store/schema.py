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
    sa.Column("started_at", sa.Float, nullable=False),
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
    # the experiment the run belongs to (default: its folder's name; migration 0010)
    sa.Column("experiment", sa.String(200)),
    # when the run was deleted: hidden from listings, restorable until `artifacts gc`
    sa.Column("deleted_at", sa.Float),
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

# A metric's history in chunks of consecutive values, packed by column (migration 0011):
# a row a value cost SQLite 1 s a million values to insert, a chunk costs 0.05 s.
# ``data`` holds ``count`` steps (int64, NO_STEP for none), then the values, then the
# times (float64), little-endian; ``seq`` orders a key's chunks as they were logged.
metric_chunks = sa.Table(
    "metric_chunks",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# Per run and metric: what listings show, so they never read a history (migration 0007).
metric_summary = sa.Table(
    "metric_summary",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    # the latest value: the greatest (step, timestamp)
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.Integer),
    sa.Column("timestamp", sa.Float, nullable=False),
)


def _runs_index(name: str, *columns: str, deleted: bool = False) -> sa.Index:
    """An index of live runs (or of deleted ones) only: every listing filters on deleted_at.

    It ends with deleted_at, which the predicate fixes, so that SQLite can read a
    listing from the index alone (it wants every column the query names in it).
    """
    where = runs.c.deleted_at.is_not(None) if deleted else runs.c.deleted_at.is_(None)
    return sa.Index(
        name,
        *(runs.c[c] for c in (*columns, "deleted_at")),
        postgresql_where=where,
        sqlite_where=where,
    )


# Listings page by (started_at, id), the skip to page N in the index alone (migration 0012).
_runs_index("ix_runs_live_started", "started_at", "id")
_runs_index("ix_runs_live_status", "status", "started_at", "id")
_runs_index("ix_runs_live_experiment", "experiment", "started_at", "id")
_runs_index("ix_runs_deleted_started", "started_at", "id", deleted=True)

# A run's tags: free key=value labels a user sets and changes (migration 0010).
run_tags = sa.Table(
    "run_tags",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.String(5000), nullable=False),
)
sa.Index("ix_run_tags_key_value", run_tags.c.key, run_tags.c.value)

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
    sa.Column("trusted_types", sa.JSON),
)

# -- the model registry (migration 0008) -------------------------------------------

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
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

model_aliases = sa.Table(
    "model_aliases",
    metadata,
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

# -- the platform's desired state (migration 0002) ------------------------------

platform_apps = sa.Table(
    "platform_apps",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    # "started" or "stopped": what the user asked for, not what is running
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("instances", sa.Integer, nullable=False),
    # the revision instances should run; the newest is not current until it is deployed
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

platform_revisions = sa.Table(
    "platform_revisions",
    metadata,
    sa.Column(
        "app",
        sa.String(63),
        sa.ForeignKey("platform_apps.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # why it exists: "push", "set-env LOG_LEVEL", "rollback to 2", ...
    sa.Column("description", sa.Text, nullable=False),
    # the app's configuration: kind, model, command, env, routes, health check, services ...
    sa.Column("spec", sa.JSON, nullable=False),
    # uploaded source: relative path -> {"digest", "mode"} (blobs in the artifact store)
    sa.Column("files", sa.JSON),
    # the staged droplet: venv, source folder, lock digest (None for a model app)
    sa.Column("droplet", sa.JSON),
)

platform_events = sa.Table(
    "platform_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app", sa.String(63), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("instance", sa.Integer),
    sa.Column("revision", sa.Integer),
    sa.Column("details", sa.JSON, nullable=False),
)

platform_services = sa.Table(
    "platform_services",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("credentials", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Processes the platform started, so a platform that was killed can stop them on restart.
platform_processes = sa.Table(
    "platform_processes",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),  # app/revision/index
    sa.Column("pid", sa.Integer, nullable=False),
    # /proc/<pid>/stat start time: tells the same process from a later one with its pid
    sa.Column("start_ticks", sa.BigInteger, nullable=False),
)

# -- streams (migration 0003) ----------------------------------------------------

platform_streams = sa.Table(
    "platform_streams",
    metadata,
    sa.Column("name", sa.String(42), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    # "undeployed" or "deployed"
    sa.Column("status", sa.String(12), nullable=False),
    # the deployed version (0: never deployed)
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Every deployment of a stream: what `stream history` lists and `stream rollback` returns to.
platform_stream_versions = sa.Table(
    "platform_stream_versions",
    metadata,
    sa.Column(
        "stream",
        sa.String(42),
        sa.ForeignKey("platform_streams.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("binder", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# User stream apps (migration 0004): `conveyor app register --name enrich --uri python:m:f`.
platform_stream_apps = sa.Table(
    "platform_stream_apps",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    # uploaded source folder: relative path -> {"digest", "mode"}; None: importable already
    sa.Column("files", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
)
platform_stream_apps.append_column(sa.Column("droplet", sa.JSON))  # migration 0005

# -- composed tasks (migration 0006) ---------------------------------------------

# Task apps registered with `conveyor task app register`: the app's whole description.
task_apps = sa.Table(
    "task_apps",
    metadata,
    sa.Column("name", sa.String(42), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

task_definitions = sa.Table(
    "task_definitions",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One row per launch; `document` holds the execution and its steps, rewritten whole on
# every change of state so that a reader never sees half a move.
task_executions = sa.Table(
    "task_executions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("task", sa.String(100), nullable=False, index=True),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
)

# Step caching: what a finished step depended on (a digest) -> the run that did it.
task_step_cache = sa.Table(
    "task_step_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("exit_status", sa.String(100)),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Schedules (`conveyor task schedule create`): the schedule, its next fire time and events.
task_schedules = sa.Table(
    "task_schedules",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
)

# Deployment targets (migration 0009): `conveyor target add prod --kubernetes ...`; the
# local target is built in and has no row.
platform_targets = sa.Table(
    "platform_targets",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Every CHECKPOINT_EVERY-th live run counted from the oldest by (started_at, id), and its
# position (``rank``, from 1): a numbered page starts its skip at the nearest one (migration
# 0013, store/checkpoints.py). Triggers on ``runs`` empty it when a write moves a position
# at or below the newest checkpoint; new runs arrive above it and move none.
run_checkpoints = sa.Table(
    "run_checkpoints",
    metadata,
    sa.Column("rank", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("id", sa.String(32), nullable=False),
)
