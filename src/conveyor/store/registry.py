"""The run registry: SQLAlchemy Core over SQLite (WAL, the default) or PostgreSQL.

    reg = Registry.from_settings(settings)
    reg.create_run(record)
    reg.add_metrics(run_id, [MetricRecord("auc", 0.93, None, time.time())])
    reg.finish_run(run_id, RunStatus.FINISHED, exit_code=0, ended_at=time.time())
    reg.get_run("3f2a")            # a unique id prefix is enough

The schema is created and upgraded by Alembic; a fresh database is migrated
on first use. Every method is one short transaction, so several runs
recording at the same time (from several processes) all land; the queries
inside are :mod:`.run_rows` (a run's own rows), :mod:`.listing`, :mod:`.metrics`,
:mod:`.run_admin` and :mod:`.uses`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

from conveyor.config import Settings, database_url
from conveyor.errors import ConfigError, NotFoundError, RegistryUnavailable
from conveyor.store import (
    checkpoints,
    connection,
    listing,
    metrics,
    run_admin,
    run_rows,
    schema,
    uses,
)
from conveyor.store.listing import RunFilter, RunPage
from conveyor.store.metrics import MetricSummary
from conveyor.store.records import (
    ArtifactUse,
    FileRecord,
    MetricRecord,
    ModelRecord,
    RunRecord,
    RunStatus,
)

__all__ = ["HEAD_REVISION", "Registry"]

#: The newest migration; compared with the database's before running Alembic at all.
HEAD_REVISION = "0013"
_MIGRATIONS = Path(__file__).parent / "migrations"


class Registry:
    """Reads and writes runs, their params, metrics, files and models."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url = database_url(url)
        try:
            parsed = sa.engine.make_url(url)
        except exc.ArgumentError as e:
            raise RegistryUnavailable(
                f"CONVEYOR_DATABASE_URL={url!r} is not a database URL",
                hint="Use sqlite:///path/to/registry.db or postgresql+psycopg://user@host/db.",
            ) from e
        self._display_url = parsed.render_as_string(hide_password=True)
        #: The SQLite database file, if any (its migration is serialised with a file lock).
        self._sqlite_file: Path | None = None
        try:
            self.engine = self._engine(parsed)
        except exc.NoSuchModuleError as e:
            raise ConfigError(
                f"CONVEYOR_DATABASE_URL={self._display_url}: {parsed.drivername!r} is not a "
                "database SQLAlchemy knows; use sqlite:///PATH or postgresql://USER@HOST/DB"
            ) from e
        except ImportError as e:
            raise ConfigError(connection.missing_driver(self._display_url, e)) from e
        if migrate:
            self.migrate()

    def _engine(self, parsed: sa.URL) -> sa.Engine:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                self._sqlite_file = Path(parsed.database)
                connection.private_sqlite_file(self._sqlite_file)
            engine = sa.create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", connection.sqlite_pragmas)
            return engine
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=self._connect_args(parsed))

    @staticmethod
    def _connect_args(parsed: sa.URL) -> dict[str, Any]:
        if parsed.get_backend_name() == "postgresql":
            return {"connect_timeout": 5}
        return {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.database_url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except exc.OperationalError as e:
            if not connection.is_connect_failure(e):
                raise
            raise RegistryUnavailable(
                f"the registry database at {self._display_url} does not answer: "
                f"{connection.first_line(e.orig)}",
                hint="Check that the server is running, or unset CONVEYOR_DATABASE_URL "
                "to use the local SQLite registry.",
            ) from e

    def transaction(self) -> AbstractContextManager[sa.Connection]:
        """One transaction on the registry, for tables other layers own (the platform's)."""
        return self._begin()

    # -- schema ---------------------------------------------------------------

    def current_revision(self) -> str | None:
        with self._begin() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def migrate(self) -> None:
        """Bring the schema to HEAD_REVISION (a no-op costing one query when current)."""
        if self.current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self._sqlite_migration_lock(), self._begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes migrating a fresh database at once: let one win.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7201)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        """Serialise first-use migrations of one SQLite file across processes.

        Several ``conveyor run`` started at once on a fresh home would otherwise
        all see no schema and all create it; the losers failed with "table
        alembic_version already exists". Alembic's upgrade is a no-op for the
        ones that get the lock after the winner.
        """
        if self._sqlite_file is None:
            yield
            return
        import fcntl

        lock_path = self._sqlite_file.with_name(self._sqlite_file.name + ".migrate-lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        with self._begin() as conn:
            run_rows.insert_run(conn, run)

    def update_run(self, run_id: str, **values: Any) -> None:
        """Set columns of a RUNNING run (environment, code, digests ...)."""
        with self._begin() as conn:
            run_rows.update_run(conn, run_id, values)

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        ended_at: float,
        exit_code: int | None = None,
        error: str | None = None,
        stdout_digest: str | None = None,
        stderr_digest: str | None = None,
    ) -> None:
        with self._begin() as conn:
            run_rows.set_final(
                conn,
                run_id,
                status,
                ended_at=ended_at,
                exit_code=exit_code,
                error=error,
                stdout_digest=stdout_digest,
                stderr_digest=stderr_digest,
            )

    def complete_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        ended_at: float,
        exit_code: int | None,
        error: str | None,
        environment: Mapping[str, Any],
        params: Mapping[str, Any],
        metric_records: Iterable[MetricRecord],
        files: Iterable[FileRecord],
        models: Iterable[ModelRecord],
        stdout_digest: str | None,
        stderr_digest: str | None,
    ) -> None:
        """Record everything a finished run produced, in one transaction.

        ``params`` are the values the code read; they replace the command line's
        text for the same names (``--param flag=yes`` read as ``True``).
        ``metric_records`` are the last ones the run logged (the recorder writes
        the earlier ones in batches with add_metrics while the run goes on).
        """
        with self._begin() as conn:
            run_rows.complete_run(
                conn,
                run_id,
                status,
                params=params,
                metric_records=metric_records,
                files=files,
                models=models,
                ended_at=ended_at,
                exit_code=exit_code,
                error=error,
                environment=dict(environment),
                stdout_digest=stdout_digest,
                stderr_digest=stderr_digest,
            )

    # -- params, metrics, files, models ----------------------------------------

    def add_params(self, run_id: str, params: Mapping[str, Any], *, source: str = "code") -> None:
        with self._begin() as conn:
            run_rows.write_params(conn, run_id, params, source=source)

    def add_metrics(self, run_id: str, records: Iterable[MetricRecord]) -> int:
        """Append a batch of metrics to their histories and summaries; returns the count."""
        with self._begin() as conn:
            return metrics.add_metrics(conn, run_id, records)

    def add_metric_rows(self, run_id: str, rows: list[metrics.MetricRow]) -> int:
        """add_metrics for (key, value, step, timestamp) tuples: the recorder's batches."""
        with self._begin() as conn:
            return metrics.add_rows(conn, run_id, rows)

    def metric_summaries(self, run_id: str) -> list[MetricSummary]:
        """Count, min, max and latest value of each metric of a run (a unique id prefix)."""
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            return metrics.summaries(conn, full)

    def metric_history(self, run_id: str, key: str, max_points: int = 500) -> list[MetricRecord]:
        """One metric's history in logging order, thinned evenly to ``max_points``."""
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            return metrics.history(conn, full, key, max_points)

    def add_files(self, run_id: str, records: Iterable[FileRecord]) -> None:
        records = list(records)
        if not records:
            return
        with self._begin() as conn:
            run_rows.add_files(conn, run_id, records)

    def add_model(self, model: ModelRecord) -> None:
        with self._begin() as conn:
            run_rows.add_model(conn, model)

    # -- reading ----------------------------------------------------------------

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one run whose id starts with ``prefix``."""
        text = prefix.strip().lower()
        if not text or not all(c in "0123456789abcdef" for c in text):
            raise NotFoundError(f"{prefix!r} is not a run id (run ids are hexadecimal)")
        with self._begin() as conn:
            ids = (
                conn.execute(
                    sa.select(schema.runs.c.id).where(schema.runs.c.id.startswith(text)).limit(5)
                )
                .scalars()
                .all()
            )
        if not ids:
            raise NotFoundError(
                f"no run with id {prefix}", hint="List the runs with 'conveyor runs'."
            )
        if len(ids) > 1:
            raise NotFoundError(
                f"run id prefix {prefix!r} is ambiguous: it matches "
                f"{', '.join(i[:12] for i in ids)}{' ...' if len(ids) == 5 else ''}",
                hint="Give more characters of the id.",
            )
        return str(ids[0])

    def get_run(self, run_id: str) -> RunRecord:
        """One run with everything recorded for it; accepts a unique id prefix."""
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            return run_rows.read_run(conn, full)

    def list_runs(
        self, *, limit: int = 50, status: RunStatus | None = None, after: str | None = None
    ) -> list[RunRecord]:
        """The newest runs first, each with params and latest metrics (no files, no histories)."""
        return self.list_runs_page(limit=limit, status=status, after=after).runs

    def list_runs_page(
        self,
        *,
        limit: int = 50,
        status: RunStatus | None = None,
        after: str | None = None,
        offset: int = 0,
        only: RunFilter | None = None,
        sort: str = "started",
        descending: bool = True,
    ) -> RunPage:
        """One page of runs, newest first, and the cursor of the next (see store/listing.py).

        ``only`` narrows the listing (experiment, a search expression, deleted runs);
        a malformed search raises SearchError, a UsageError naming the position.
        A deep numbered page whose checkpoints are missing builds them and reads
        again; should a writer move them again meanwhile, it skips without them.
        """
        page = partial(
            listing.runs_page,
            limit=limit,
            status=status,
            after=after,
            offset=offset,
            only=only,
            sort=sort,
            descending=descending,
        )
        try:
            with self._begin() as conn:
                return page(conn)
        except checkpoints.Stale:
            pass
        try:
            with self._begin() as conn:
                checkpoints.build(conn)
            with self._begin() as conn:
                return page(conn)
        except (checkpoints.Stale, exc.OperationalError, exc.InternalError):
            # Moved again, writers holding the table past the lock timeout, or a read-only
            # database: count the runs before the page instead.
            pass
        except exc.ProgrammingError as e:
            if not _lacks_privilege(e):
                raise
            # A role that may only read (PostgreSQL): it cannot lock the table to build.
        with self._begin() as conn:
            return page(conn, checkpointed=False)

    def reproductions(self, run_id: str, limit: int = 50) -> list[RunRecord]:
        """The runs reproducing ``run_id`` (a full id), newest first, with their outputs."""
        with self._begin() as conn:
            return listing.reproductions(conn, run_id, limit)

    # -- tags and deletion (store/run_admin.py) -----------------------------------

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> str:
        """Set tags on a run (a unique id prefix); returns the run's full id."""
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            run_admin.set_tags(conn, full, tags)
        return full

    def remove_tags(self, run_id: str, keys: list[str]) -> str:
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            run_admin.remove_tags(conn, full, keys)
        return full

    def delete_run(self, run_id: str, *, restore: bool = False) -> str:
        """Hide a run from listings (or bring it back); its record stays until ``purge_deleted``."""
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            run_admin.mark_deleted(conn, full, deleted=not restore)
        return full

    def experiments(self, limit: int = 500) -> list[str]:
        """The experiments live runs belong to, by name."""
        with self._begin() as conn:
            return run_admin.experiments(conn, limit)

    def purge_deleted(self) -> int:
        """Remove deleted runs for good; returns how many (``artifacts gc`` calls this)."""
        with self._begin() as conn:
            return run_admin.purge_deleted(conn)

    def get_model(self, run_id: str, name: str) -> ModelRecord:
        full = self.resolve_id(run_id)
        with self._begin() as conn:
            return run_rows.read_model(conn, full, name)

    # -- what runs point at in the artifact store (queries in store/uses.py) -------

    def referenced_digests(self) -> set[str]:
        """Every digest a run or an app revision points at directly (not inside manifests)."""
        with self._begin() as conn:
            return uses.referenced_digests(conn)

    def snapshot_digests(self) -> set[str]:
        """The code snapshot manifest of every run: the only artifacts that list other artifacts.

        Knowing them from the registry is what lets ``artifacts gc`` leave every
        other blob unread, however large.
        """
        with self._begin() as conn:
            return uses.snapshot_digests(conn)

    def artifact_uses(self) -> list[ArtifactUse]:
        """Every artifact each run points at directly, with the file it was stored from."""
        with self._begin() as conn:
            return uses.artifact_uses(conn)


def _lacks_privilege(error: exc.DBAPIError) -> bool:
    """Whether PostgreSQL refused the statement for the role's privileges (SQLSTATE 42501)."""
    driver_error = error.orig
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    return code == "42501"
