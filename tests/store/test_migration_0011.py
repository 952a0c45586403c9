"""Migration 0011 on a registry with histories recorded a row a value: they read the same after."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store.metrics import CHUNK
from conveyor.store.registry import HEAD_REVISION, Registry
from tests.store.migrating import migrate_to
from tests.store.test_migration_0010 import old_run

RUN = "cd" + "0" * 30
#: More than a chunk, so the history spans two; every tenth step none.
LOSS = [
    {"run_id": RUN, "key": "loss", "value": 1.0 / (i + 1), "step": None if i % 10 == 9 else i}
    for i in range(CHUNK + 5)
]


def test_histories_recorded_before_0011_read_the_same_after_it_and_back(db_url: str) -> None:
    with Registry(db_url, migrate=False) as old:
        migrate_to(old, "0010")
        with old.transaction() as conn:
            old_run(conn, RUN)
            conn.execute(
                sa.text(
                    "INSERT INTO metrics (run_id, key, value, step, timestamp) "
                    "VALUES (:run_id, :key, :value, :step, 2.0)"
                ),
                [*LOSS[:7], {"run_id": RUN, "key": "acc", "value": 0.5, "step": 1}, *LOSS[7:]],
            )
    with Registry(db_url) as reg:  # migrates to the head on first use
        assert reg.current_revision() == HEAD_REVISION
        loss = reg.metric_history(RUN, "loss", max_points=len(LOSS))
        assert [(m.value, m.step) for m in loss] == [(r["value"], r["step"]) for r in LOSS]
        thinned = reg.metric_history(RUN, "loss", max_points=10)
        assert len(thinned) == 10
        assert thinned[-1].value == LOSS[-1]["value"]
        assert [(m.value, m.step) for m in reg.metric_history(RUN, "acc")] == [(0.5, 1)]

        migrate_to(reg, "0010", down=True)
        with reg.transaction() as conn:
            assert not sa.inspect(conn).has_table("metric_chunks")
            back = conn.execute(
                sa.text("SELECT value, step FROM metrics WHERE key = 'loss' ORDER BY id")
            ).all()
        assert [tuple(r) for r in back] == [(r["value"], r["step"]) for r in LOSS]
