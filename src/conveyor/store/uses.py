"""Which artifacts the registry's records point at: what gc keeps and verify reports.

Each function runs its queries on a connection the Registry opened; none
takes a list of ids or digests, so the number of query parameters stays the
same however many runs there are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.records import ArtifactUse

__all__ = ["artifact_uses", "looks_like_digest", "referenced_digests", "snapshot_digests"]


def looks_like_digest(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("blake3:", "sha256:"))


#: Deleted runs keep nothing alive: their artifacts go at the next gc unless others use them.
_LIVE = schema.runs.c.deleted_at.is_(None)


def referenced_digests(conn: sa.Connection) -> set[str]:
    """Every digest a run or an app revision points at directly (not inside manifests)."""
    found = {use.digest for use in artifact_uses(conn)}
    # Registered model versions (an uploaded file has no run to keep it).
    found.update(conn.execute(sa.select(schema.model_versions.c.digest)).scalars())
    # Sources pushed to the platform: a restage rebuilds from them.
    for table in (schema.platform_revisions, schema.platform_stream_apps):
        for files in conn.execute(sa.select(table.c.files)).scalars():
            found.update(entry["digest"] for entry in (files or {}).values())
    return found


def snapshot_digests(conn: sa.Connection) -> set[str]:
    """The digest of every run's code snapshot manifest."""
    return {
        code["snapshot"]
        for code in conn.execute(sa.select(schema.runs.c.code).where(_LIVE)).scalars()
        if looks_like_digest((code or {}).get("snapshot"))
    }


def artifact_uses(conn: sa.Connection) -> list[ArtifactUse]:
    """Every artifact each run points at directly, with the file it was stored from."""
    uses: list[ArtifactUse] = []
    cwds: dict[str, str] = {}
    for r in conn.execute(
        sa.select(
            schema.runs.c.id,
            schema.runs.c.cwd,
            schema.runs.c.code,
            schema.runs.c.environment,
            schema.runs.c.stdout_digest,
            schema.runs.c.stderr_digest,
        ).where(_LIVE)
    ):
        cwds[r.id] = r.cwd
        code: dict[str, Any] = r.code or {}
        if looks_like_digest(code.get("snapshot")):
            uses.append(ArtifactUse(r.id, code["snapshot"], "snapshot", code.get("root")))
        if looks_like_digest(code.get("diff")):
            uses.append(ArtifactUse(r.id, code["diff"], "diff"))
        env: dict[str, Any] = r.environment or {}
        uses.extend(
            ArtifactUse(r.id, v, "environment") for v in env.values() if looks_like_digest(v)
        )
        for digest, role in ((r.stdout_digest, "stdout"), (r.stderr_digest, "stderr")):
            if digest:
                uses.append(ArtifactUse(r.id, digest, role))
    # A recorded path is relative to the run's folder when it was inside it.
    live = sa.select(schema.runs.c.id).where(_LIVE)
    files = sa.select(
        schema.files.c.run_id, schema.files.c.role, schema.files.c.path, schema.files.c.digest
    ).where(schema.files.c.run_id.in_(live))
    for f in conn.execute(files):
        uses.append(ArtifactUse(f.run_id, f.digest, f.role, _under(cwds, f.run_id, f.path)))
    models = sa.select(schema.models.c.run_id, schema.models.c.path, schema.models.c.digest).where(
        schema.models.c.run_id.in_(live)
    )
    for m in conn.execute(models):
        uses.append(ArtifactUse(m.run_id, m.digest, "model", _under(cwds, m.run_id, m.path)))
    return uses


def _under(cwds: dict[str, str], run_id: str, path: str) -> str | None:
    cwd = cwds.get(run_id)
    return None if cwd is None else str(Path(cwd, path))
