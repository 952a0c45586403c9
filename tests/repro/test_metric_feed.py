"""The recorder's metric feed: each journal line written once, whatever arrives in between."""

from __future__ import annotations

import math
from pathlib import Path

from conveyor.repro.journal import METRICS_NAME, append_event, append_metric, flush_metrics
from conveyor.repro.metric_feed import MetricFeed
from conveyor.store.registry import Registry
from tests.store.test_registry import make_run


def test_each_metric_is_written_once_across_pumps(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        journal = tmp_path / METRICS_NAME
        feed = MetricFeed(registry, run.id, journal, batch=3)
        for step in range(5):
            append_metric(tmp_path, "loss", 1.0 / (step + 1), step)
        append_event(tmp_path, "param", key="lr", value=0.1)  # flushes nothing of its own
        flush_metrics()
        with journal.open("ab") as fh:
            fh.write(b'5\t0.1\t1.0\t"lo')  # torn: still being written

        assert feed.pump() == 5
        with journal.open("ab") as fh:
            fh.write(b'ss"\n')
        append_metric(tmp_path, "odd", math.inf, None)
        append_metric(tmp_path, "odd", math.nan, None)  # not recorded: SQLite has no NaN
        flush_metrics()
        assert feed.pump() == 2
        assert feed.pump() == 0

        summaries = {s.key: s for s in registry.metric_summaries(run.id)}
        assert (summaries["loss"].count, summaries["loss"].value) == (6, 0.1)
        assert (summaries["odd"].count, summaries["odd"].value) == (1, math.inf)


def test_names_with_tabs_and_lines_torn_mid_file(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        path = tmp_path / METRICS_NAME
        with path.open("ab") as fh:
            fh.write(b'3\t0.5\t1.0\t"lo')  # a writer killed mid-line, then another wrote
        append_metric(tmp_path, "joined", 1.0, 1)  # lost: one line with the torn one
        append_metric(tmp_path, "a\tb\nc", 2.0, 7)
        append_metric(tmp_path, "plain", 1.0, 2.5)  # type: ignore[arg-type]  # not an integer
        append_metric(tmp_path, "huge", 3.0, 10**30)  # more than a database integer holds
        flush_metrics()

        assert MetricFeed(registry, run.id, path).pump() == 3
        summaries = {s.key: s for s in registry.metric_summaries(run.id)}
        assert sorted(summaries) == ["a\tb\nc", "huge", "plain"]
        assert (summaries["huge"].value, summaries["huge"].step) == (3.0, None)
        assert (summaries["a\tb\nc"].value, summaries["a\tb\nc"].step) == (2.0, 7)
        assert (summaries["plain"].value, summaries["plain"].step) == (1.0, None)
