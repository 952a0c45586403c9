"""The apps repository: the platform's desired state in the registry.

Apps, their revisions, events, user-provided services and the processes a
platform started: everything a restarted platform needs to bring its apps
back. Service credentials are sealed (:mod:`conveyor.store.secrets`) when a
box is given: the database file alone does not reveal them; so are the
secrets in a revision's variables (:func:`conveyor.store.sealing.seal_env`). A revision's
spec is stored as the JSON the platform's ``AppSpec`` writes
(:mod:`conveyor.platform.spec` reads it back); nothing here knows about
running processes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError, StoreError
from conveyor.store import schema
from conveyor.store.registry import Registry
from conveyor.store.sealing import seal_env
from conveyor.store.secrets import SecretBox

__all__ = ["AppRecord", "AppRepository", "EventRecord", "RevisionRecord"]


@dataclass(frozen=True)
class AppRecord:
    name: str
    #: "started" or "stopped": what the user asked for.
    state: str
    instances: int
    #: The revision its instances run (or would run, when stopped).
    revision: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RevisionRecord:
    app: str
    number: int
    created_at: float
    description: str
    spec: Mapping[str, Any]
    files: Mapping[str, Any] | None
    droplet: Mapping[str, Any] | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    app: str
    at: float
    kind: str
    instance: int | None
    revision: int | None
    details: Mapping[str, Any]


class AppRepository:
    """Reads and writes the platform tables of one registry."""

    def __init__(self, registry: Registry, secrets: SecretBox | None = None) -> None:
        self.registry = registry
        #: Seals service credentials at rest; without one they are stored as given.
        self.secrets = secrets

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        return self.registry.transaction()

    # -- apps -----------------------------------------------------------------

    def apps(self) -> list[AppRecord]:
        with self._begin() as conn:
            rows = conn.execute(sa.select(schema.platform_apps).order_by("name")).mappings()
            return [AppRecord(**row) for row in rows]

    def find_app(self, name: str) -> AppRecord | None:
        with self._begin() as conn:
            row = (
                conn.execute(
                    sa.select(schema.platform_apps).where(schema.platform_apps.c.name == name)
                )
                .mappings()
                .first()
            )
        return None if row is None else AppRecord(**row)

    def app(self, name: str) -> AppRecord:
        found = self.find_app(name)
        if found is None:
            raise NotFoundError(
                f"there is no app named {name!r}", hint="`conveyor apps` lists the apps."
            )
        return found

    def save_app(self, name: str, *, state: str, instances: int, revision: int) -> None:
        """Create the app or change what is desired of it."""
        now = time.time()
        table = schema.platform_apps
        with self._begin() as conn:
            changed = conn.execute(
                table.update()
                .where(table.c.name == name)
                .values(state=state, instances=instances, revision=revision, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    table.insert().values(
                        name=name,
                        state=state,
                        instances=instances,
                        revision=revision,
                        created_at=now,
                        updated_at=now,
                    )
                )

    def delete_app(self, name: str) -> None:
        with self._begin() as conn:
            conn.execute(
                schema.platform_revisions.delete().where(schema.platform_revisions.c.app == name)
            )
            conn.execute(schema.platform_apps.delete().where(schema.platform_apps.c.name == name))

    # -- revisions ------------------------------------------------------------

    def add_revision(
        self,
        app: str,
        *,
        description: str,
        spec: Mapping[str, Any],
        files: Mapping[str, Any] | None,
        droplet: Mapping[str, Any] | None,
    ) -> RevisionRecord:
        """A new immutable revision of ``app`` (which must exist), numbered after the last."""
        table = schema.platform_revisions
        with self._begin() as conn:
            last = conn.execute(
                sa.select(sa.func.max(table.c.number)).where(table.c.app == app)
            ).scalar()
            record = RevisionRecord(
                app=app,
                number=(last or 0) + 1,
                created_at=time.time(),
                description=description,
                spec=self._sealed_spec(spec),
                files=None if files is None else dict(files),
                droplet=None if droplet is None else dict(droplet),
            )
            conn.execute(table.insert().values(**record.__dict__))
        return record

    def revision(self, app: str, number: int) -> RevisionRecord:
        table = schema.platform_revisions
        with self._begin() as conn:
            row = (
                conn.execute(sa.select(table).where(table.c.app == app, table.c.number == number))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(
                f"app {app!r} has no revision {number}",
                hint=f"`conveyor revisions {app}` lists them.",
            )
        return RevisionRecord(**row)

    def replace_spec(self, app: str, number: int, spec: Mapping[str, Any]) -> None:
        """Rewrite a revision's spec in place. Revisions are otherwise immutable: this is for
        data fixes only (a credential kept in clear before the registry kept its hash)."""
        table = schema.platform_revisions
        with self._begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.app == app, table.c.number == number)
                .values(spec=self._sealed_spec(spec))
            )

    def _sealed_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """``spec`` as kept: the secrets in its variables sealed (when there is a box)."""
        env = spec.get("env")
        if self.secrets is None or not env:
            return dict(spec)
        return {**spec, "env": seal_env(self.secrets, env)}

    def seal_stored_env(self) -> int:
        """Seal the secrets that revisions kept in clear before they were sealed (a data fix
        at start-up, no schema change); how many revisions changed."""
        changed = 0
        for app in self.apps() if self.secrets is not None else ():
            for revision in self.revisions(app.name):
                if self._sealed_spec(revision.spec) != dict(revision.spec):
                    self.replace_spec(app.name, revision.number, revision.spec)
                    changed += 1
        return changed

    def revisions(self, app: str) -> list[RevisionRecord]:
        table = schema.platform_revisions
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.app == app).order_by(table.c.number)
            ).mappings()
            return [RevisionRecord(**row) for row in rows]

    # -- events ---------------------------------------------------------------

    def add_event(
        self,
        app: str,
        kind: str,
        details: Mapping[str, Any],
        *,
        at: float | None = None,
        instance: int | None = None,
        revision: int | None = None,
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                schema.platform_events.insert().values(
                    app=app,
                    at=time.time() if at is None else at,
                    kind=kind,
                    instance=instance,
                    revision=revision,
                    details=dict(details),
                )
            )

    def events(self, app: str, *, limit: int = 50) -> list[EventRecord]:
        """The app's latest ``limit`` events, oldest first."""
        table = schema.platform_events
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.app == app).order_by(table.c.id.desc()).limit(limit)
            ).mappings()
            return [EventRecord(**row) for row in reversed(list(rows))]

    def last_event(self, app: str, kind: str) -> EventRecord | None:
        """The app's latest event of ``kind``, if it has one."""
        table = schema.platform_events
        with self._begin() as conn:
            row = (
                conn.execute(
                    sa.select(table)
                    .where(table.c.app == app, table.c.kind == kind)
                    .order_by(table.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return None if row is None else EventRecord(**row)

    def delete_events(self, app: str) -> None:
        with self._begin() as conn:
            conn.execute(schema.platform_events.delete().where(schema.platform_events.c.app == app))

    # -- user-provided services -------------------------------------------------

    def services(self) -> dict[str, Mapping[str, Any]]:
        """Every service's credentials, by name (unsealed)."""
        table = schema.platform_services
        with self._begin() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.credentials).order_by(table.c.name))
            stored = {row.name: row.credentials for row in rows}
        return {name: self._open(value) for name, value in stored.items()}

    def save_service(self, name: str, credentials: Mapping[str, Any]) -> bool:
        """Create or replace a service; True if it was new.

        Rows an earlier version stored in plain text are sealed on the way.
        """
        table = schema.platform_services
        value = self._seal(credentials)
        with self._begin() as conn:
            changed = conn.execute(
                table.update().where(table.c.name == name).values(credentials=value)
            ).rowcount
            if not changed:
                conn.execute(
                    table.insert().values(name=name, credentials=value, created_at=time.time())
                )
            if self.secrets is not None:
                plain = conn.execute(sa.select(table.c.name, table.c.credentials)).all()
                for row in plain:
                    if not SecretBox.is_sealed(row.credentials):
                        conn.execute(
                            table.update()
                            .where(table.c.name == row.name)
                            .values(credentials=self._seal(row.credentials))
                        )
        return not changed

    def _seal(self, credentials: Mapping[str, Any]) -> Any:
        return dict(credentials) if self.secrets is None else self.secrets.seal(credentials)

    def _open(self, stored: Any) -> Mapping[str, Any]:
        """Sealed credentials unsealed; plain ones (written before sealing) as they are."""
        if SecretBox.is_sealed(stored):
            if self.secrets is None:
                raise StoreError(
                    "service credentials are sealed, and this registry was opened without the key"
                )
            return self.secrets.unseal(stored)
        result: Mapping[str, Any] = stored
        return result

    def bindings(self) -> dict[str, list[str]]:
        """For each service bound by some app's newest revision: those apps, by name."""
        table = schema.platform_revisions
        newest = (
            sa.select(table.c.app, sa.func.max(table.c.number).label("number"))
            .group_by(table.c.app)
            .subquery()
        )
        query = (
            sa.select(table.c.app, table.c.spec)
            .join(newest, (table.c.app == newest.c.app) & (table.c.number == newest.c.number))
            .order_by(table.c.app)
        )
        bound: dict[str, list[str]] = {}
        with self._begin() as conn:
            for row in conn.execute(query):
                for service in row.spec.get("services") or ():
                    bound.setdefault(service, []).append(row.app)
        return bound

    def delete_service(self, name: str) -> None:
        table = schema.platform_services
        with self._begin() as conn:
            if not conn.execute(table.delete().where(table.c.name == name)).rowcount:
                raise NotFoundError(
                    f"there is no service named {name!r}",
                    hint="`conveyor services` lists them.",
                )

    # -- processes this platform started ----------------------------------------

    def record_process(self, key: str, pid: int, start_ticks: int) -> None:
        table = schema.platform_processes
        with self._begin() as conn:
            conn.execute(table.delete().where(table.c.key == key))
            conn.execute(table.insert().values(key=key, pid=pid, start_ticks=start_ticks))

    def forget_process(self, key: str) -> None:
        table = schema.platform_processes
        with self._begin() as conn:
            conn.execute(table.delete().where(table.c.key == key))

    def processes(self) -> list[tuple[str, int, int]]:
        table = schema.platform_processes
        with self._begin() as conn:
            return [(row.key, row.pid, row.start_ticks) for row in conn.execute(sa.select(table))]
