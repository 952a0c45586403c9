"""The registry at a year of a team's work: no query's parameter count grows with the data."""

from __future__ import annotations

import pytest

from conveyor.store import schema
from conveyor.store.records import MetricRecord
from conveyor.store.registry import Registry

RUNS = 100_000


def _bulk_runs(reg: Registry, count: int) -> None:
    """Write ``count`` finished runs, each with one parameter, in one transaction."""
    runs = [
        {
            "id": f"{i:032x}",
            "name": "train",
            "status": "FINISHED",
            "command": ["python", "train.py"],
            "cwd": "/tmp/project",
            "started_at": float(i),
            "ended_at": float(i) + 1,
            "seed": i,
            "host": "testhost",
            "code": {},
            "environment": {},
        }
        for i in range(count)
    ]
    params = [
        {"run_id": r["id"], "key": "i", "value": n, "source": "cli"} for n, r in enumerate(runs)
    ]
    with reg.transaction() as conn:
        conn.execute(schema.runs.insert(), runs)
        conn.execute(schema.params.insert(), params)


@pytest.mark.slow
def test_listing_a_hundred_thousand_runs(registry: Registry) -> None:
    _bulk_runs(registry, RUNS)
    newest = f"{RUNS - 1:032x}"
    registry.add_metrics(newest, [MetricRecord("auc", 0.9, None, 1.0)])

    listed = registry.list_runs(limit=RUNS)

    assert len(listed) == RUNS
    assert listed[0].id == newest
    assert listed[0].latest_metrics() == {"auc": 0.9}
    assert all(run.params == {"i": int(run.id, 16)} for run in listed)
