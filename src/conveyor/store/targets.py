"""The targets repository: where apps may be deployed besides this machine.

A target is a name, a kind (``kubernetes``) and the kind's configuration (a
kubeconfig context, a namespace, an image registry ...), kept as one JSON
document. The built-in ``local`` target (the supervisor and router on this
machine) has no row and cannot be added or removed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError, UsageError
from conveyor.store import schema
from conveyor.store.registry import Registry

__all__ = ["LOCAL", "TargetRepository"]

#: The built-in target's name.
LOCAL = "local"


class TargetRepository:
    """Reads and writes the targets of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def add(self, name: str, kind: str, config: Mapping[str, Any], *, replace: bool) -> bool:
        """Record a target; True if it is new. An existing one is kept unless ``replace``."""
        if name == LOCAL:
            raise UsageError(f"{LOCAL!r} is the built-in target on this machine; pick another name")
        table = schema.platform_targets
        with self.registry.transaction() as conn:
            exists = conn.execute(sa.select(table.c.name).where(table.c.name == name)).first()
            if exists and not replace:
                raise UsageError(
                    f"a target named {name!r} exists already",
                    hint=f"Remove it first (conveyor target remove {name}) or add --replace.",
                )
            conn.execute(sa.delete(table).where(table.c.name == name))
            conn.execute(
                sa.insert(table).values(
                    name=name, kind=kind, config=dict(config), created_at=time.time()
                )
            )
        return exists is None

    def get(self, name: str) -> dict[str, Any]:
        """The target's document: ``{"name", "kind", "config", "created_at"}``."""
        table = schema.platform_targets
        with self.registry.transaction() as conn:
            row = conn.execute(sa.select(table).where(table.c.name == name)).first()
        if row is None:
            raise NotFoundError(
                f"there is no target named {name!r}", hint="`conveyor target list` lists them."
            )
        return _document(row)

    def all(self) -> list[dict[str, Any]]:
        table = schema.platform_targets
        with self.registry.transaction() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.name)).all()
        return [_document(row) for row in rows]

    def remove(self, name: str) -> None:
        if name == LOCAL:
            raise UsageError(f"{LOCAL!r} is the built-in target and cannot be removed")
        table = schema.platform_targets
        with self.registry.transaction() as conn:
            gone = conn.execute(sa.delete(table).where(table.c.name == name)).rowcount
        if not gone:
            raise NotFoundError(
                f"there is no target named {name!r}", hint="`conveyor target list` lists them."
            )


def _document(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "config": dict(row.config),
        "created_at": row.created_at,
    }
