"""Metric summaries where listings read them, histories thinned where charts show them."""

from __future__ import annotations

import itertools

from conveyor.store.metrics import CHUNK, MetricRow
from conveyor.store.records import MetricRecord
from conveyor.store.registry import Registry
from tests.store.test_registry import make_run

STEPS = 20_000


def test_summaries_follow_every_batch(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    for start in range(0, STEPS, 5_000):  # batches, as the recorder writes them
        registry.add_metrics(
            run.id,
            [MetricRecord("loss", 1.0 / (s + 1), s, float(s)) for s in range(start, start + 5_000)],
        )
    registry.add_metrics(run.id, [MetricRecord("auc", 0.5, None, 1.0)])

    summaries = {s.key: s for s in registry.metric_summaries(run.id)}

    loss = summaries["loss"]
    assert (loss.count, loss.min, loss.max, loss.value, loss.step) == (
        STEPS,
        1.0 / STEPS,
        1.0,
        1.0 / STEPS,
        STEPS - 1,
    )
    assert summaries["auc"].count == 1
    assert registry.get_run(run.id).latest_metrics() == {"auc": 0.5, "loss": 1.0 / STEPS}


def test_a_history_is_thinned_evenly_and_keeps_the_last_point(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    registry.add_metrics(
        run.id, [MetricRecord("loss", float(s), s, float(s)) for s in range(STEPS)]
    )

    points = registry.metric_history(run.id, "loss", max_points=300)

    steps = [p.step or 0 for p in points]
    assert 150 < len(points) <= 300
    assert steps[-1] == STEPS - 1
    assert len({b - a for a, b in itertools.pairwise(steps)}) == 1  # evenly spaced
    assert len(registry.metric_history(run.id, "loss", max_points=STEPS)) == STEPS
    assert registry.metric_history(run.id, "nothing", max_points=10) == []


def test_a_late_step_logged_earlier_stays_the_latest(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    registry.add_metrics(run.id, [MetricRecord("acc", 0.9, 10, 1.0)])
    registry.add_metrics(run.id, [MetricRecord("acc", 0.1, 3, 2.0)])  # a straggler

    (acc,) = registry.metric_summaries(run.id)

    assert (acc.value, acc.step, acc.count, acc.min) == (0.9, 10, 2, 0.1)


def test_every_row_of_a_large_batch_is_kept_in_order(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    # Two statements of many rows, then the rest row by row.
    rows: list[MetricRow] = [("loss", float(i), i, 1000.0 + i) for i in range(450)]

    assert registry.add_metric_rows(run.id, rows) == 450

    history = registry.metric_history(run.id, "loss", max_points=1000)
    assert [(m.value, m.step, m.timestamp) for m in history] == [r[1:] for r in rows]


def test_a_history_of_many_batches_and_keys_thins_as_one(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    # Sparse batches of two keys interleaved, then one batch larger than a chunk.
    logged: list[MetricRow] = []
    for step in range(0, 60, 3):
        batch: list[MetricRow] = [("loss", float(s), s, float(s)) for s in range(step, step + 3)]
        registry.add_metric_rows(run.id, [*batch, ("acc", 0.5, None, float(step))])
        logged += batch
    big: list[MetricRow] = [("loss", float(s), s, float(s)) for s in range(60, 60 + CHUNK + 7)]
    registry.add_metric_rows(run.id, big)
    logged += big

    whole = registry.metric_history(run.id, "loss", max_points=len(logged))
    assert [(m.value, m.step) for m in whole] == [(r[1], r[2]) for r in logged]
    thinned = [m.step for m in registry.metric_history(run.id, "loss", max_points=7)]
    stride = -(-len(logged) // 7)
    assert thinned == [r[2] for r in logged[(len(logged) - 1) % stride :: stride]]
    acc = registry.metric_history(run.id, "acc", max_points=100)
    assert [(m.value, m.step) for m in acc] == [(0.5, None)] * 20
