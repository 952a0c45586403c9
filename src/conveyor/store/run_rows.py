"""A run's own rows: the run, its params, files and models written; its final status; read back.

The queries behind :class:`~conveyor.store.registry.Registry`'s run methods,
each inside the caller's transaction (as :mod:`.listing`, :mod:`.metrics`,
:mod:`.run_admin` and :mod:`.uses` are)::

    with registry.transaction() as conn:
        insert_run(conn, record)
        set_final(conn, record.id, RunStatus.FINISHED, ended_at=time.time(), exit_code=0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError, RunError, UsageError
from conveyor.store import metrics, run_admin, schema
from conveyor.store.listing import run_from_row
from conveyor.store.records import FileRecord, MetricRecord, ModelRecord, RunRecord, RunStatus

__all__ = [
    "add_files",
    "add_model",
    "complete_run",
    "insert_run",
    "read_model",
    "read_run",
    "set_final",
    "status_of",
    "update_run",
    "write_params",
]


def insert_run(conn: sa.Connection, run: RunRecord) -> None:
    """A new run with the params its command line gave."""
    conn.execute(
        schema.runs.insert().values(
            id=run.id,
            name=run.name,
            status=run.status.value,
            command=run.command,
            cwd=run.cwd,
            started_at=run.started_at,
            seed=run.seed,
            host=run.host,
            pid=run.pid,
            code=run.code,
            environment=run.environment,
            reproduces=run.reproduces,
            experiment=run.experiment,
        )
    )
    write_params(conn, run.id, run.params, source="cli")


def update_run(conn: sa.Connection, run_id: str, values: Mapping[str, Any]) -> None:
    """Set columns of a RUNNING run (environment, code, digests ...)."""
    status = status_of(conn, run_id)
    if status.final:
        raise RunError(f"run {run_id} is already {status.value} and cannot change")
    conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(**values))


def set_final(conn: sa.Connection, run_id: str, status: RunStatus, **values: Any) -> None:
    """Move a RUNNING run to its final ``status``."""
    status_of(conn, run_id).check_transition(status, run_id)
    conn.execute(
        schema.runs.update().where(schema.runs.c.id == run_id).values(status=status.value, **values)
    )


def complete_run(
    conn: sa.Connection,
    run_id: str,
    status: RunStatus,
    *,
    params: Mapping[str, Any],
    metric_records: Iterable[MetricRecord],
    files: Iterable[FileRecord],
    models: Iterable[ModelRecord],
    **final: Any,
) -> None:
    """Everything a finished run produced, then its ``final`` columns (Registry.complete_run)."""
    file_rows = {(f.role, f.path): _file_row(run_id, f) for f in files}
    model_rows = {m.name: _model_row(m) for m in models}
    if params:
        # One statement per name (executemany): a query's parameter count never
        # grows with the data, whose limit PostgreSQL's protocol sets at 65,535.
        conn.execute(
            schema.params.delete().where(
                (schema.params.c.run_id == run_id) & (schema.params.c.key == sa.bindparam("name"))
            ),
            [{"name": k} for k in params],
        )
        conn.execute(
            schema.params.insert(),
            [{"run_id": run_id, "key": k, "value": v, "source": "code"} for k, v in params.items()],
        )
    metrics.add_metrics(conn, run_id, metric_records)
    if file_rows:
        conn.execute(schema.files.insert(), list(file_rows.values()))
    if model_rows:
        conn.execute(schema.models.insert(), list(model_rows.values()))
    set_final(conn, run_id, status, **final)


def status_of(conn: sa.Connection, run_id: str) -> RunStatus:
    value = conn.execute(sa.select(schema.runs.c.status).where(schema.runs.c.id == run_id)).scalar()
    if value is None:
        raise NotFoundError(f"no run with id {run_id}")
    return RunStatus(value)


def write_params(
    conn: sa.Connection, run_id: str, params: Mapping[str, Any], *, source: str
) -> None:
    """Add params; one already recorded may be given again only with the same value."""
    if not params:
        return
    existing = dict(
        conn.execute(
            sa.select(schema.params.c.key, schema.params.c.value).where(
                schema.params.c.run_id == run_id
            )
        ).all()
    )
    new = []
    for key, value in params.items():
        if key in existing:
            if existing[key] != value:
                raise UsageError(
                    f"parameter {key!r} of run {run_id} is already {existing[key]!r}; "
                    f"it cannot also be {value!r}"
                )
            continue
        new.append({"run_id": run_id, "key": key, "value": value, "source": source})
    if new:
        conn.execute(schema.params.insert(), new)


def add_files(conn: sa.Connection, run_id: str, records: Iterable[FileRecord]) -> None:
    rows = [_file_row(run_id, f) for f in records]
    if not rows:
        return
    for row in rows:  # the last declaration of a path wins
        conn.execute(
            schema.files.delete().where(
                (schema.files.c.run_id == run_id)
                & (schema.files.c.role == row["role"])
                & (schema.files.c.path == row["path"])
            )
        )
    conn.execute(schema.files.insert(), rows)


def add_model(conn: sa.Connection, model: ModelRecord) -> None:
    conn.execute(
        schema.models.delete().where(
            (schema.models.c.run_id == model.run_id) & (schema.models.c.name == model.name)
        )
    )
    conn.execute(schema.models.insert().values(**_model_row(model)))


def read_run(conn: sa.Connection, full: str) -> RunRecord:
    """One run (a full id) with everything recorded for it."""
    row = conn.execute(sa.select(schema.runs).where(schema.runs.c.id == full)).one()
    run = run_from_row(row._mapping)
    run.params = dict(
        conn.execute(
            sa.select(schema.params.c.key, schema.params.c.value)
            .where(schema.params.c.run_id == full)
            .order_by(schema.params.c.key)
        ).all()
    )
    run.tags = run_admin.tags_of(conn, full)
    # The latest value of each metric; histories are read where they are shown.
    run.metrics = [s.latest() for s in metrics.summaries(conn, full)]
    run.files = [
        FileRecord(r.role, r.path, r.digest, r.size)
        for r in conn.execute(
            sa.select(schema.files)
            .where(schema.files.c.run_id == full)
            .order_by(schema.files.c.role, schema.files.c.path)
        )
    ]
    run.models = [
        _model_record(r)
        for r in conn.execute(
            sa.select(schema.models)
            .where(schema.models.c.run_id == full)
            .order_by(schema.models.c.name)
        )
    ]
    return run


def read_model(conn: sa.Connection, full: str, name: str) -> ModelRecord:
    """The model ``name`` of run ``full``; NotFoundError naming the run's models."""
    row = conn.execute(
        sa.select(schema.models).where(
            (schema.models.c.run_id == full) & (schema.models.c.name == name)
        )
    ).one_or_none()
    if row is not None:
        return _model_record(row)
    names = (
        conn.execute(sa.select(schema.models.c.name).where(schema.models.c.run_id == full))
        .scalars()
        .all()
    )
    known = ", ".join(names) if names else "none"
    raise NotFoundError(f"run {full[:12]} has no model named {name!r} (its models: {known})")


def _file_row(run_id: str, f: FileRecord) -> dict[str, Any]:
    return {"run_id": run_id, "role": f.role, "path": f.path, "digest": f.digest, "size": f.size}


def _model_row(m: ModelRecord) -> dict[str, Any]:
    return {
        "run_id": m.run_id,
        "name": m.name,
        "path": m.path,
        "format": m.format,
        "digest": m.digest,
        "signature": m.signature,
        "trusted_types": list(m.trusted_types) if m.trusted_types else None,
    }


def _model_record(r: Any) -> ModelRecord:
    return ModelRecord(
        r.run_id, r.name, r.path, r.format, r.digest, r.signature, tuple(r.trusted_types or ())
    )
