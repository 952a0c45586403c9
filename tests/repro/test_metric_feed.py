"""The recorder's metric feed: each journal line written once, whatever arrives in between."""

from __future__ import annotations

import math
from pathlib import Path

from conveyor.repro.journal import JOURNAL_NAME, append_event, append_metric, flush_metrics
from conveyor.repro.metric_feed import MetricFeed
from conveyor.store.registry import Registry
from tests.store.test_registry import make_run


def test_each_metric_is_written_once_across_pumps(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        journal = tmp_path / JOURNAL_NAME
        feed = MetricFeed(registry, run.id, journal, batch=3)
        for step in range(5):
            append_metric(tmp_path, "loss", 1.0 / (step + 1), step)
        append_event(tmp_path, "param", key="lr", value=0.1)  # flushes nothing of its own
        flush_metrics()
        with journal.open("ab") as fh:
            fh.write(b'{"type":"metric","time":1.0,"key":"lo')  # torn: still being written

        assert feed.pump() == 5
        with journal.open("ab") as fh:
            fh.write(b'ss","value":0.1,"step":5}\n')
        append_metric(tmp_path, "odd", math.inf, None)
        append_metric(tmp_path, "odd", math.nan, None)  # not recorded: SQLite has no NaN
        flush_metrics()
        assert feed.pump() == 2
        assert feed.pump() == 0

        summaries = {s.key: s for s in registry.metric_summaries(run.id)}
        assert (summaries["loss"].count, summaries["loss"].value) == (6, 0.1)
        assert (summaries["odd"].count, summaries["odd"].value) == (1, math.inf)
