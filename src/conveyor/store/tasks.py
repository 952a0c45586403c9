"""The tasks repository: task apps, task definitions, executions and the step cache.

An execution is kept as one JSON document (the execution and its steps),
written whole in one transaction on every change of state: a reader — or a
platform starting again after it was killed — sees the state before a move or
after it, never between.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError, UsageError
from conveyor.store import schema
from conveyor.store.registry import Registry

__all__ = ["TaskRepository"]


class TaskRepository:
    """Reads and writes the task tables of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # -- apps -------------------------------------------------------------------

    def save_app(self, name: str, spec: Mapping[str, Any]) -> None:
        table = schema.task_apps
        with self.registry.transaction() as conn:
            conn.execute(sa.delete(table).where(table.c.name == name))
            conn.execute(
                sa.insert(table).values(name=name, spec=dict(spec), created_at=time.time())
            )

    def apps(self) -> dict[str, dict[str, Any]]:
        table = schema.task_apps
        with self.registry.transaction() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.spec)).all()
        return {name: dict(spec) for name, spec in rows}

    def delete_app(self, name: str) -> None:
        table = schema.task_apps
        with self.registry.transaction() as conn:
            gone = conn.execute(sa.delete(table).where(table.c.name == name)).rowcount
        if not gone:
            raise NotFoundError(f"there is no task app named {name!r}")

    # -- definitions ------------------------------------------------------------

    def create(self, name: str, definition: str) -> None:
        table = schema.task_definitions
        with self.registry.transaction() as conn:
            exists = conn.execute(sa.select(table.c.name).where(table.c.name == name)).first()
            if exists:
                raise UsageError(
                    f"a task named {name!r} exists already",
                    hint=f"Destroy it first: conveyor task destroy {name}",
                )
            conn.execute(
                sa.insert(table).values(name=name, definition=definition, created_at=time.time())
            )

    def replace_definition(self, name: str, definition: str) -> None:
        """Rewrite a task's definition in place: for data fixes only (a URL's password kept
        in clear before the registry sealed it)."""
        table = schema.task_definitions
        with self.registry.transaction() as conn:
            conn.execute(sa.update(table).where(table.c.name == name).values(definition=definition))

    def definition(self, name: str) -> str:
        table = schema.task_definitions
        with self.registry.transaction() as conn:
            row = conn.execute(sa.select(table.c.definition).where(table.c.name == name)).first()
        if row is None:
            raise NotFoundError(
                f"there is no task named {name!r}", hint="`conveyor task list` lists them."
            )
        return str(row[0])

    def tasks(self) -> list[tuple[str, str]]:
        table = schema.task_definitions
        with self.registry.transaction() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.definition).order_by(table.c.name))
            return [(str(n), str(d)) for n, d in rows]

    def destroy(self, name: str) -> None:
        self.definition(name)
        with self.registry.transaction() as conn:
            conn.execute(
                sa.delete(schema.task_executions).where(schema.task_executions.c.task == name)
            )
            conn.execute(
                sa.delete(schema.task_definitions).where(schema.task_definitions.c.name == name)
            )

    # -- executions -------------------------------------------------------------

    def save_execution(self, document: Mapping[str, Any]) -> None:
        table = schema.task_executions
        values = {"task": document["task"], "state": document["state"], "document": dict(document)}
        with self.registry.transaction() as conn:
            changed = conn.execute(
                sa.update(table).where(table.c.id == document["id"]).values(**values)
            ).rowcount
            if not changed:
                conn.execute(
                    sa.insert(table).values(
                        id=document["id"], started_at=document["started_at"], **values
                    )
                )

    def execution(self, execution_id: str) -> dict[str, Any]:
        table = schema.task_executions
        with self.registry.transaction() as conn:
            rows = conn.execute(
                sa.select(table.c.document).where(
                    table.c.id.startswith(execution_id, autoescape=True)
                )
            ).all()
        if len(rows) != 1:
            what = "no" if not rows else "more than one"
            raise NotFoundError(
                f"{what} task execution has an id starting {execution_id!r}",
                hint="`conveyor task execution list` lists them.",
            )
        return dict(rows[0][0])

    def executions(
        self, task: str | None = None, *, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Executions, newest first."""
        table = schema.task_executions
        query = sa.select(table.c.document).order_by(table.c.started_at.desc())
        if task is not None:
            query = query.where(table.c.task == task)
        if state is not None:
            query = query.where(table.c.state == state)
        with self.registry.transaction() as conn:
            return [dict(row[0]) for row in conn.execute(query)]

    # -- the step cache ---------------------------------------------------------

    def cached(self, key: str) -> tuple[str, str | None] | None:
        table = schema.task_step_cache
        with self.registry.transaction() as conn:
            row = conn.execute(
                sa.select(table.c.run_id, table.c.exit_status).where(table.c.key == key)
            ).first()
        return None if row is None else (str(row[0]), row[1])

    def remember(self, key: str, run_id: str, exit_status: str | None) -> None:
        table = schema.task_step_cache
        with self.registry.transaction() as conn:
            conn.execute(sa.delete(table).where(table.c.key == key))
            conn.execute(
                sa.insert(table).values(
                    key=key, run_id=run_id, exit_status=exit_status, created_at=time.time()
                )
            )

    # -- schedules --------------------------------------------------------------

    def save_schedule(self, document: Mapping[str, Any], *, new: bool = False) -> None:
        table = schema.task_schedules
        with self.registry.transaction() as conn:
            exists = conn.execute(
                sa.select(table.c.name).where(table.c.name == document["name"])
            ).first()
            if exists and new:
                raise UsageError(
                    f"a schedule named {document['name']!r} exists already",
                    hint=f"Destroy it first: conveyor task schedule destroy {document['name']}",
                )
            if exists:
                conn.execute(
                    sa.update(table)
                    .where(table.c.name == document["name"])
                    .values(document=dict(document))
                )
            else:
                conn.execute(
                    sa.insert(table).values(name=document["name"], document=dict(document))
                )

    def schedule(self, name: str) -> dict[str, Any]:
        table = schema.task_schedules
        with self.registry.transaction() as conn:
            row = conn.execute(sa.select(table.c.document).where(table.c.name == name)).first()
        if row is None:
            raise NotFoundError(
                f"there is no schedule named {name!r}",
                hint="`conveyor task schedule list` lists them.",
            )
        return dict(row[0])

    def schedules(self) -> list[dict[str, Any]]:
        table = schema.task_schedules
        with self.registry.transaction() as conn:
            rows = conn.execute(sa.select(table.c.document).order_by(table.c.name)).all()
        return [dict(row[0]) for row in rows]

    def delete_schedule(self, name: str) -> None:
        self.schedule(name)
        table = schema.task_schedules
        with self.registry.transaction() as conn:
            conn.execute(sa.delete(table).where(table.c.name == name))
