"""The streams repository: stream definitions, their deployed versions, registered user apps.

A stream is created undeployed (version 0); every deployment adds a version
(``stream history`` lists them, ``stream rollback`` redeploys one). User apps
registered with ``conveyor app register`` keep their URI, uploaded files and
staged droplet.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError, UsageError
from conveyor.store import schema
from conveyor.store.registry import Registry

__all__ = ["StreamRecord", "StreamRepository", "StreamVersion", "UserAppRecord"]


@dataclass(frozen=True)
class StreamRecord:
    name: str
    definition: str
    #: "undeployed" or "deployed".
    status: str
    #: The deployed version (0: never deployed).
    version: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StreamVersion:
    version: int
    definition: str
    properties: Mapping[str, str]
    binder: str
    description: str
    created_at: float


@dataclass(frozen=True)
class UserAppRecord:
    name: str
    #: ``python:<module>:<function>``.
    uri: str
    #: Uploaded files: relative path -> {"digest", "mode"}; None when importable already.
    files: Mapping[str, Any] | None
    #: The environment staged from the files' requirements, if they had any.
    droplet: Mapping[str, Any] | None


class StreamRepository:
    """Reads and writes the stream tables of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # -- streams ----------------------------------------------------------------

    def stream(self, name: str) -> StreamRecord:
        table = schema.platform_streams
        with self.registry.transaction() as conn:
            row = conn.execute(sa.select(table).where(table.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(
                f"there is no stream named {name!r}", hint="`conveyor stream list` lists them."
            )
        return StreamRecord(**row)

    def streams(self) -> list[StreamRecord]:
        table = schema.platform_streams
        with self.registry.transaction() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.name)).mappings().all()
        return [StreamRecord(**row) for row in rows]

    def create(self, name: str, definition: str) -> None:
        """A new undeployed stream; UsageError if the name is taken."""
        table = schema.platform_streams
        now = time.time()
        with self.registry.transaction() as conn:
            if conn.execute(sa.select(table.c.name).where(table.c.name == name)).first():
                raise UsageError(
                    f"stream {name!r} already exists",
                    hint=f"Destroy it first (conveyor stream destroy {name}) or pick another name.",
                )
            conn.execute(
                table.insert().values(
                    name=name,
                    definition=definition,
                    status="undeployed",
                    version=0,
                    created_at=now,
                    updated_at=now,
                )
            )

    def set_status(
        self, name: str, status: str, *, version: int | None = None, definition: str | None = None
    ) -> None:
        """Record that the stream is deployed (as ``version`` of ``definition``) or undeployed."""
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if version is not None:
            values["version"] = version
        if definition is not None:
            values["definition"] = definition
        table = schema.platform_streams
        with self.registry.transaction() as conn:
            conn.execute(table.update().where(table.c.name == name).values(**values))

    def delete(self, name: str) -> None:
        """Forget the stream and its versions."""
        versions = schema.platform_stream_versions
        with self.registry.transaction() as conn:
            conn.execute(versions.delete().where(versions.c.stream == name))
            conn.execute(
                schema.platform_streams.delete().where(schema.platform_streams.c.name == name)
            )

    # -- versions ---------------------------------------------------------------

    def versions(self, name: str) -> list[StreamVersion]:
        """Every deployment of the stream, oldest first."""
        table = schema.platform_stream_versions
        with self.registry.transaction() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.stream == name).order_by(table.c.version)
            ).mappings()
            return [
                StreamVersion(
                    r["version"],
                    r["definition"],
                    r["properties"],
                    r["binder"],
                    r["description"],
                    r["created_at"],
                )
                for r in rows
            ]

    def add_version(
        self,
        name: str,
        *,
        definition: str,
        properties: Mapping[str, str],
        binder: str,
        description: str,
    ) -> int:
        """Record a deployment as the stream's next version; its number."""
        table = schema.platform_stream_versions
        with self.registry.transaction() as conn:
            last = conn.execute(
                sa.select(sa.func.max(table.c.version)).where(table.c.stream == name)
            ).scalar()
            version = (last or 0) + 1
            conn.execute(
                table.insert().values(
                    stream=name,
                    version=version,
                    definition=definition,
                    properties=dict(properties),
                    binder=binder,
                    description=description,
                    created_at=time.time(),
                )
            )
        return version

    def replace_version(
        self, name: str, version: int, *, definition: str, properties: Mapping[str, str]
    ) -> None:
        """Rewrite a version's definition and properties in place (a data fix: a credential
        kept in clear before the registry kept its hash)."""
        table = schema.platform_stream_versions
        with self.registry.transaction() as conn:
            conn.execute(
                table.update()
                .where(table.c.stream == name, table.c.version == version)
                .values(definition=definition, properties=dict(properties))
            )

    # -- registered user apps ------------------------------------------------------

    def user_apps(self) -> list[UserAppRecord]:
        table = schema.platform_stream_apps
        with self.registry.transaction() as conn:
            rows = conn.execute(
                sa.select(table.c.name, table.c.uri, table.c.files, table.c.droplet).order_by(
                    table.c.name
                )
            )
            return [UserAppRecord(r.name, r.uri, r.files, r.droplet) for r in rows]

    def user_app(self, name: str) -> UserAppRecord | None:
        return next((app for app in self.user_apps() if app.name == name), None)

    def save_user_app(
        self,
        name: str,
        uri: str,
        files: Mapping[str, Any] | None,
        droplet: Mapping[str, Any] | None,
    ) -> None:
        """Register (or register again) a user app."""
        table = schema.platform_stream_apps
        with self.registry.transaction() as conn:
            conn.execute(table.delete().where(table.c.name == name))
            conn.execute(
                table.insert().values(
                    name=name,
                    uri=uri,
                    files=None if not files else dict(files),
                    droplet=None if droplet is None else dict(droplet),
                    created_at=time.time(),
                )
            )

    def delete_user_app(self, name: str) -> None:
        table = schema.platform_stream_apps
        with self.registry.transaction() as conn:
            if not conn.execute(table.delete().where(table.c.name == name)).rowcount:
                raise NotFoundError(f"there is no registered app named {name!r}")
