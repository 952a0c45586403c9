"""The registry's answers to lineage questions: who made a digest, who used it, who serves it.

Each function reads through a :class:`Registry` and returns plain values;
``conveyor.repro.lineage`` walks the graph with them. Digests are indexed
lookups on the ``files`` and ``models`` tables; revisions, streams and task
executions are scanned (there are few of them, and their JSON documents
cannot be indexed portably on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.records import ModelRecord
from conveyor.store.registry import Registry

__all__ = [
    "FileUse",
    "RevisionUse",
    "StepUse",
    "StreamUse",
    "file_uses",
    "models_with_digest",
    "revisions_of_version",
    "revisions_serving",
    "steps_of_run",
    "streams_scoring",
    "streams_scoring_version",
    "versions_with_digest",
]

_RUN_REF = re.compile(r"run:([0-9A-Za-z]{6,32})/")
#: ``models:/name/3``, ``models:/name@alias`` or ``models:/name``: (name, version, alias).
_MODELS_REF = re.compile(
    r"models:/([A-Za-z0-9][A-Za-z0-9._-]*?)(?:/([0-9]+)|@([A-Za-z0-9._-]+))?(?![A-Za-z0-9._@/-])"
)


@dataclass(frozen=True)
class FileUse:
    run_id: str
    role: str  # "input" or "output"
    path: str
    digest: str


@dataclass(frozen=True)
class RevisionUse:
    app: str
    number: int
    description: str
    created_at: float
    model: str


@dataclass(frozen=True)
class StreamUse:
    stream: str
    version: int
    definition: str


@dataclass(frozen=True)
class StepUse:
    execution: str
    task: str
    step: str
    state: str | None


def file_uses(
    registry: Registry, *, digest: str | None = None, run_id: str | None = None
) -> list[FileUse]:
    """The recorded inputs and outputs with ``digest``, or those of ``run_id``."""
    f = schema.files.c
    query = sa.select(f.run_id, f.role, f.path, f.digest).order_by(f.run_id, f.role, f.path)
    if digest is not None:
        query = query.where(f.digest == digest)
    if run_id is not None:
        query = query.where(f.run_id == run_id)
    with registry.transaction() as conn:
        return [FileUse(r.run_id, r.role, r.path, r.digest) for r in conn.execute(query)]


def models_with_digest(registry: Registry, digest: str) -> list[ModelRecord]:
    """The models runs saved whose content has ``digest``."""
    m = schema.models.c
    query = sa.select(m.run_id, m.name, m.path, m.format, m.digest, m.signature).where(
        m.digest == digest
    )
    with registry.transaction() as conn:
        return [
            ModelRecord(r.run_id, r.name, r.path, r.format, r.digest, r.signature)
            for r in conn.execute(query)
        ]


def revisions_serving(
    registry: Registry, *, run_ids: set[str], digests: set[str]
) -> list[RevisionUse]:
    """App revisions whose model is a model of one of ``run_ids`` or an upload with a digest."""
    r = schema.platform_revisions.c
    query = sa.select(r.app, r.number, r.description, r.created_at, r.spec, r.files, r.droplet)
    found: list[RevisionUse] = []
    with registry.transaction() as conn:
        for row in conn.execute(query.order_by(r.app, r.number)):
            spec: dict[str, Any] = row.spec or {}
            model = str(spec.get("model") or "")
            if not model:
                continue
            droplet: dict[str, Any] = row.droplet or {}
            ref = _RUN_REF.match(model)
            by_run = droplet.get("run_id") in run_ids or (
                ref is not None and any(run.startswith(ref.group(1)) for run in run_ids)
            )
            files: dict[str, Any] = row.files or {}
            uploaded = any(
                (path == model or path.startswith(model + "/")) and entry.get("digest") in digests
                for path, entry in files.items()
            )
            if by_run or uploaded:
                found.append(
                    RevisionUse(row.app, row.number, row.description, row.created_at, model)
                )
    return found


def streams_scoring(registry: Registry, run_ids: set[str]) -> list[StreamUse]:
    """Stream versions whose definition scores with a model of one of ``run_ids``."""
    s = schema.platform_stream_versions.c
    query = sa.select(s.stream, s.version, s.definition).order_by(s.stream, s.version)
    found: list[StreamUse] = []
    with registry.transaction() as conn:
        for row in conn.execute(query):
            refs = _RUN_REF.findall(row.definition)
            if any(run.startswith(ref) for ref in refs for run in run_ids):
                found.append(StreamUse(row.stream, row.version, row.definition))
    return found


def steps_of_run(registry: Registry, run_id: str) -> list[StepUse]:
    """The composed-task steps that ``run_id`` ran (or was reused for, when cached)."""
    t = schema.task_executions.c
    query = sa.select(t.id, t.task, t.document).order_by(t.started_at)
    found: list[StepUse] = []
    with registry.transaction() as conn:
        for row in conn.execute(query):
            for step in (row.document or {}).get("steps", []):
                if step.get("run_id") == run_id:
                    found.append(
                        StepUse(row.id, row.task, str(step.get("name")), step.get("state"))
                    )
    return found


def versions_with_digest(registry: Registry, digest: str) -> list[tuple[str, int]]:
    """(model, version) of the registered versions whose artifact has ``digest``."""
    v = schema.model_versions.c
    query = sa.select(v.model, v.version).where(v.digest == digest).order_by(v.model, v.version)
    with registry.transaction() as conn:
        return [(r.model, r.version) for r in conn.execute(query)]


def _names_version(ref: tuple[str, ...], name: str, version: int, aliases: set[str]) -> bool:
    """Whether a ``models:/`` reference (as _MODELS_REF's groups) names ``name`` version N now."""
    ref_name, number, alias = ref
    if ref_name != name:
        return False
    if number:
        return int(number) == version
    return bool(alias) and alias in aliases


def revisions_of_version(
    registry: Registry, name: str, version: int, aliases: set[str]
) -> list[RevisionUse]:
    """App revisions that serve version ``version`` of the registered model ``name``.

    A revision staged from ``models:/`` records the version it exported; an older
    one is matched by its URI (``/N``, or an alias in ``aliases``, those at N now).
    """
    r = schema.platform_revisions.c
    query = sa.select(r.app, r.number, r.description, r.created_at, r.spec, r.droplet)
    found: list[RevisionUse] = []
    with registry.transaction() as conn:
        for row in conn.execute(query.order_by(r.app, r.number)):
            model = str((row.spec or {}).get("model") or "")
            ref = _MODELS_REF.fullmatch(model)
            if ref is None or ref.group(1) != name:
                continue
            exported = (row.droplet or {}).get("version")
            if exported is not None:
                serves = int(exported) == version
            else:
                serves = _names_version(ref.groups(""), name, version, aliases)
            if serves:
                found.append(
                    RevisionUse(row.app, row.number, row.description, row.created_at, model)
                )
    return found


def streams_scoring_version(
    registry: Registry, name: str, version: int, aliases: set[str]
) -> list[StreamUse]:
    """Stream versions whose definition scores with ``models:/name/N`` (or an alias at N now)."""
    s = schema.platform_stream_versions.c
    query = sa.select(s.stream, s.version, s.definition).order_by(s.stream, s.version)
    found: list[StreamUse] = []
    with registry.transaction() as conn:
        for row in conn.execute(query):
            refs = (m.groups("") for m in _MODELS_REF.finditer(row.definition))
            if any(_names_version(ref, name, version, aliases) for ref in refs):
                found.append(StreamUse(row.stream, row.version, row.definition))
    return found
