"""The model registry: named models, their immutable versions and the aliases that move.

    repo = ModelRepository(registry)
    v, created = repo.add_version("diagnosis", digest=d, format="sklearn", signature=sig,
                                  run_id=run, source="run:3f2a/model", trusted_types=())
    repo.set_alias("diagnosis", "champion", v.version)
    repo.resolve("diagnosis", alias="champion")      # -> that ModelVersion

A version points at one artifact digest; registering the same digest under a
name again returns the version it already has. Unknown names, versions and
aliases are NotFoundErrors that say what exists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from conveyor.errors import NotFoundError, UsageError
from conveyor.store import schema
from conveyor.store.registry import Registry

__all__ = ["ModelRepository", "ModelVersion", "RegisteredModel", "check_model_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_model_name(name: str, what: str = "model name") -> str:
    """``name`` if it can be a model or alias name (letters, digits, '.', '_', '-')."""
    if not _NAME.match(name or ""):
        raise UsageError(
            f"{what} {name!r} is not valid: use up to 100 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    digest: str
    format: str
    signature: dict[str, Any] | None
    #: The run that trained it; None for an uploaded file.
    run_id: str | None
    #: Where it came from: ``run:<id>/<name>`` or ``file:<name>``.
    source: str
    #: The file's name as it was saved (its suffix says how to load it).
    filename: str
    #: Types its skops file needs that the run recorded when it wrote it (see ModelRecord).
    trusted_types: tuple[str, ...]
    created_at: float
    #: The aliases pointing at it now.
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "format": self.format,
            "signature": self.signature,
            "run_id": self.run_id,
            "source": self.source,
            "filename": self.filename,
            "trusted_types": list(self.trusted_types),
            "created_at": self.created_at,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    tags: Mapping[str, str]
    created_at: float
    updated_at: float
    latest_version: int | None = None
    aliases: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tags": dict(self.tags),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "latest_version": self.latest_version,
            "aliases": dict(self.aliases),
        }


_V = schema.model_versions
_A = schema.model_aliases
_M = schema.registered_models


class ModelRepository:
    """Reads and writes the model registry tables of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        return self.registry.transaction()

    # -- versions ---------------------------------------------------------------

    def add_version(
        self,
        name: str,
        *,
        digest: str,
        format: str,
        signature: dict[str, Any] | None,
        run_id: str | None,
        source: str,
        filename: str,
        trusted_types: tuple[str, ...] = (),
        description: str | None = None,
    ) -> tuple[ModelVersion, bool]:
        """The new version of ``name`` for ``digest``, or the one it already has (created=False)."""
        check_model_name(name)
        row = {
            "model": name,
            "digest": digest,
            "format": format,
            "signature": signature,
            "run_id": run_id,
            "source": source,
            "filename": PurePosixPath(filename).name,
            "trusted_types": sorted(trusted_types) or None,
        }
        for attempt in range(3):
            try:
                return self._add_version(row, description)
            except exc.IntegrityError:
                if attempt == 2:  # two registrations raced for the same number, three times
                    raise
        raise AssertionError("unreachable")

    def _add_version(
        self, fields: Mapping[str, Any], description: str | None
    ) -> tuple[ModelVersion, bool]:
        name, now = fields["model"], time.time()
        with self._begin() as conn:
            existing = conn.execute(
                sa.select(_V).where((_V.c.model == name) & (_V.c.digest == fields["digest"]))
            ).one_or_none()
            if existing is not None:
                return self._version(conn, existing), False
            if conn.execute(sa.select(_M.c.name).where(_M.c.name == name)).first() is None:
                conn.execute(
                    _M.insert().values(
                        name=name,
                        description=description or "",
                        tags={},
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                values: dict[str, Any] = {"updated_at": now}
                if description is not None:
                    values["description"] = description
                conn.execute(_M.update().where(_M.c.name == name).values(**values))
            number = (
                conn.execute(
                    sa.select(sa.func.max(_V.c.version)).where(_V.c.model == name)
                ).scalar()
                or 0
            ) + 1
            row = {**fields, "version": number, "created_at": now}
            conn.execute(_V.insert().values(**row))
            created = conn.execute(
                sa.select(_V).where((_V.c.model == name) & (_V.c.version == number))
            ).one()
            return self._version(conn, created), True

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        with self._begin() as conn:
            self._require_model(conn, name)
            rows = conn.execute(sa.select(_V).where(_V.c.model == name).order_by(_V.c.version))
            aliases = self._aliases(conn, name)
            return [self._version(conn, r, aliases) for r in rows]

    def version(self, name: str, number: int) -> ModelVersion:
        with self._begin() as conn:
            self._require_model(conn, name)
            row = conn.execute(
                sa.select(_V).where((_V.c.model == name) & (_V.c.version == number))
            ).one_or_none()
            if row is None:
                numbers = conn.execute(
                    sa.select(_V.c.version).where(_V.c.model == name).order_by(_V.c.version)
                ).scalars()
                raise NotFoundError(
                    f"model {name!r} has no version {number} "
                    f"(its versions: {', '.join(map(str, numbers)) or 'none'})"
                )
            return self._version(conn, row)

    def resolve(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """The version ``models:/name/N`` or ``models:/name@alias`` names (else the latest)."""
        if alias is not None:
            with self._begin() as conn:
                self._require_model(conn, name)
                aliases = self._aliases(conn, name)
            if alias not in aliases:
                known = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items()))
                raise NotFoundError(
                    f"model {name!r} has no alias {alias!r} (its aliases: {known or 'none'})",
                    hint=f"Set one with 'conveyor models alias {name} {alias} VERSION'.",
                )
            return self.version(name, aliases[alias])
        if version is None:
            latest = self.model(name).latest_version
            if latest is None:
                raise NotFoundError(f"model {name!r} has no versions")
            version = latest
        return self.version(name, version)

    # -- models -----------------------------------------------------------------

    def models(self) -> list[RegisteredModel]:
        with self._begin() as conn:
            names = conn.execute(sa.select(_M.c.name).order_by(_M.c.name)).scalars().all()
            return [self._model(conn, n) for n in names]

    def model(self, name: str) -> RegisteredModel:
        with self._begin() as conn:
            self._require_model(conn, name)
            return self._model(conn, name)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        set_tags: Mapping[str, str] | None = None,
        remove_tags: tuple[str, ...] = (),
    ) -> RegisteredModel:
        with self._begin() as conn:
            self._require_model(conn, name)
            tags = dict(conn.execute(sa.select(_M.c.tags).where(_M.c.name == name)).scalar() or {})
            tags.update(set_tags or {})
            for key in remove_tags:
                tags.pop(key, None)
            values: dict[str, Any] = {"tags": tags, "updated_at": time.time()}
            if description is not None:
                values["description"] = description
            conn.execute(_M.update().where(_M.c.name == name).values(**values))
            return self._model(conn, name)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of ``name`` at ``version`` (which must exist)."""
        check_model_name(alias, "alias")
        self.version(name, version)
        with self._begin() as conn:
            conn.execute(_A.delete().where((_A.c.model == name) & (_A.c.alias == alias)))
            conn.execute(
                _A.insert().values(model=name, alias=alias, version=version, updated_at=time.time())
            )

    def delete_alias(self, name: str, alias: str) -> None:
        with self._begin() as conn:
            self._require_model(conn, name)
            gone = conn.execute(_A.delete().where((_A.c.model == name) & (_A.c.alias == alias)))
            if not gone.rowcount:
                known = ", ".join(sorted(self._aliases(conn, name))) or "none"
                raise NotFoundError(f"model {name!r} has no alias {alias!r} (its aliases: {known})")

    # -- rows -------------------------------------------------------------------

    def _require_model(self, conn: sa.Connection, name: str) -> None:
        if conn.execute(sa.select(_M.c.name).where(_M.c.name == name)).first() is not None:
            return
        names = conn.execute(sa.select(_M.c.name).order_by(_M.c.name).limit(21)).scalars().all()
        listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise NotFoundError(
            f"no registered model named {name!r} (models: {listed or 'none'})",
            hint="Register one with 'conveyor models register run:<id>/<model> --name NAME'.",
        )

    def _aliases(self, conn: sa.Connection, name: str) -> dict[str, int]:
        rows = conn.execute(sa.select(_A.c.alias, _A.c.version).where(_A.c.model == name))
        return {r.alias: r.version for r in rows}

    def _model(self, conn: sa.Connection, name: str) -> RegisteredModel:
        row = conn.execute(sa.select(_M).where(_M.c.name == name)).one()
        latest = conn.execute(
            sa.select(sa.func.max(_V.c.version)).where(_V.c.model == name)
        ).scalar()
        return RegisteredModel(
            name=row.name,
            description=row.description or "",
            tags=dict(row.tags or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            latest_version=latest,
            aliases=self._aliases(conn, name),
        )

    def _version(
        self, conn: sa.Connection, row: Any, aliases: Mapping[str, int] | None = None
    ) -> ModelVersion:
        if aliases is None:
            aliases = self._aliases(conn, row.model)
        return ModelVersion(
            model=row.model,
            version=row.version,
            digest=row.digest,
            format=row.format,
            signature=row.signature,
            run_id=row.run_id,
            source=row.source,
            filename=row.filename,
            trusted_types=tuple(row.trusted_types or ()),
            created_at=row.created_at,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == row.version)),
        )
