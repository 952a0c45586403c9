"""Migration 0012 on a registry holding runs: every listing shows the same pages; and back."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.listing import RunFilter
from conveyor.store.records import RunStatus
from conveyor.store.registry import HEAD_REVISION, Registry
from tests.store.migrating import migrate_to


def _runs(count: int) -> list[dict[str, object]]:
    """Runs of two experiments: a third FAILED, a seventh deleted, pairs started together."""
    return [
        {
            "id": f"{i:032x}",
            "name": "train",
            "status": "FAILED" if i % 3 == 0 else "FINISHED",
            "command": ["python", "train.py"],
            "cwd": "/tmp/project",
            "started_at": float(i // 2),
            "seed": i,
            "host": "testhost",
            "code": {},
            "environment": {},
            "experiment": "odd" if i % 2 else "even",
            "deleted_at": 5.0 if i % 7 == 0 else None,
        }
        for i in range(count)
    ]


def _listings(reg: Registry) -> dict[str, list[str]]:
    """The ids of the pages a user can ask for: by number, by cursor, filtered."""
    filters = {
        "live": RunFilter(),
        "failed": RunFilter(RunStatus.FAILED),
        "even": RunFilter(experiment="even"),
        "deleted": RunFilter(deleted=True),
    }
    found: dict[str, list[str]] = {}
    for name, only in filters.items():
        first = reg.list_runs_page(limit=9, only=only)
        found[name] = [r.id for r in first.runs]
        found[f"{name} page 3"] = [
            r.id for r in reg.list_runs_page(limit=9, offset=18, only=only).runs
        ]
        found[f"{name} after"] = [
            r.id for r in reg.list_runs_page(limit=9, after=first.next, only=only).runs
        ]
    return found


def _run_indexes(reg: Registry) -> set[tuple[str, tuple[str, ...]]]:
    with reg.transaction() as conn:
        found = sa.inspect(conn).get_indexes("runs")
    return {(str(ix["name"]), tuple(str(c) for c in ix["column_names"])) for ix in found}


def _vacuum_settings(reg: Registry) -> list[str] | None:
    """The runs table's own autovacuum settings on PostgreSQL (None: the server's defaults)."""
    with reg.transaction() as conn:
        if conn.dialect.name != "postgresql":
            return None
        found = conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE relname = 'runs'"))
        return found.scalar()


def test_listings_are_the_same_pages_before_0012_after_it_and_back(db_url: str) -> None:
    with Registry(db_url, migrate=False) as old:
        migrate_to(old, "0011")
        with old.transaction() as conn:
            conn.execute(schema.runs.insert(), _runs(200))
        before = _listings(old)
        old_indexes = _run_indexes(old)
    with Registry(db_url) as reg:  # migrates to the head on first use
        assert reg.current_revision() == HEAD_REVISION
        assert _listings(reg) == before
        assert _run_indexes(reg) == {
            (str(ix.name), tuple(c.name for c in ix.columns)) for ix in schema.runs.indexes
        }
        if reg.engine.dialect.name == "postgresql":
            assert _vacuum_settings(reg) == [
                "autovacuum_vacuum_insert_scale_factor=0.01",
                "autovacuum_vacuum_scale_factor=0.01",
            ]
        migrate_to(reg, "0011", down=True)
        assert _listings(reg) == before
        assert _run_indexes(reg) == old_indexes
        assert _vacuum_settings(reg) is None
    newest_first = [f"{i:032x}" for i in reversed(range(200))]
    assert before["deleted"] == [r for r in newest_first if int(r, 16) % 7 == 0][:9]
    assert before["failed page 3"] == [r for r in newest_first if _failed_live(r)][18:27]


def _failed_live(run_id: str) -> bool:
    return int(run_id, 16) % 3 == 0 and int(run_id, 16) % 7 != 0
