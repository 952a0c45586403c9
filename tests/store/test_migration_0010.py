"""Migration 0010 on a registry that already holds runs: they stay, live, untagged; and back."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store.listing import RunFilter
from conveyor.store.registry import HEAD_REVISION, Registry
from tests.store.migrating import migrate_to


def old_run(conn: sa.Connection, run_id: str) -> None:
    """A finished run named old-run, written with the columns every revision has."""
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, name, status, command, cwd, started_at, seed, host, "
            "code, environment) VALUES (:id, 'old-run', 'FINISHED', '[]', '/tmp', 1.0, 1, "
            "'h', '{}', '{}')"
        ),
        {"id": run_id},
    )


def test_runs_recorded_before_0010_are_listed_searched_and_tagged_after_it(db_url: str) -> None:
    with Registry(db_url, migrate=False) as old:
        migrate_to(old, "0007")
        with old.transaction() as conn:
            old_run(conn, "ab" + "0" * 30)
    with Registry(db_url) as reg:  # migrates to the head on first use
        assert reg.current_revision() == HEAD_REVISION
        run = reg.get_run("ab")
        assert (run.experiment, run.deleted_at, run.tags) == (None, None, {})
        reg.set_tags("ab", {"stage": "prod"})
        found = reg.list_runs_page(only=RunFilter(where="tags.stage = 'prod'")).runs
        assert [r.name for r in found] == ["old-run"]
        migrate_to(reg, "0007", down=True)
        assert reg.current_revision() == "0007"
        with reg.transaction() as conn:
            assert not sa.inspect(conn).has_table("run_tags")
            names = conn.execute(sa.text("SELECT name FROM runs")).scalars().all()
        assert names == ["old-run"]
