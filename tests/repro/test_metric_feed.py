"""The recorder's metric feed: each value written once, whatever arrives in between."""

from __future__ import annotations

import math
from pathlib import Path

from conveyor.repro.journal import append_event
from conveyor.repro.metric_feed import MetricFeed
from conveyor.repro.metric_journal import (
    METRICS_NAME,
    append_metric,
    flush_metrics,
    read_metric_frames,
)
from conveyor.store.registry import Registry
from tests.store.test_registry import make_run


def _frame(folder: Path, key: str, value: float, step: int) -> bytes:
    """The bytes of one frame holding one value, as the script writes it."""
    append_metric(folder, key, value, step)
    flush_metrics()
    return (folder / METRICS_NAME).read_bytes()


def test_each_metric_is_written_once_across_pumps(tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    aside.mkdir()
    torn = _frame(aside, "loss", 0.1, 5)
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        journal = tmp_path / METRICS_NAME
        feed = MetricFeed(registry, run.id, journal, batch=3)
        for step in range(5):
            append_metric(tmp_path, "loss", 1.0 / (step + 1), step)
            flush_metrics()
        append_event(tmp_path, "param", key="lr", value=0.1)  # flushes nothing of its own
        with journal.open("ab") as fh:
            fh.write(torn[:30])  # still being written

        assert feed.pump() == 5
        with journal.open("ab") as fh:
            fh.write(torn[30:])
        append_metric(tmp_path, "odd", math.inf, None)
        append_metric(tmp_path, "odd", math.nan, None)  # not recorded: SQLite has no NaN
        flush_metrics()
        assert feed.pump() == 2
        assert feed.pump() == 0

        summaries = {s.key: s for s in registry.metric_summaries(run.id)}
        assert (summaries["loss"].count, summaries["loss"].value) == (6, 0.1)
        assert (summaries["odd"].count, summaries["odd"].value) == (1, math.inf)


def test_names_with_tabs_and_frames_torn_mid_file(tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    aside.mkdir()
    torn = _frame(aside, "lost", 0.5, 3)
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        path = tmp_path / METRICS_NAME
        with path.open("ab") as fh:
            fh.write(torn[:-4])  # a writer killed mid-frame, then another wrote
        append_metric(tmp_path, "a\tb\nc", 2.0, 7)
        append_metric(tmp_path, "plain", 1.0, 2.5)  # type: ignore[arg-type]  # not an integer
        append_metric(tmp_path, "huge", 3.0, 10**30)  # more than a database integer holds
        append_metric(tmp_path, "big", 4.0, 10**12)
        append_metric(tmp_path, 5, 5.0, 1)  # type: ignore[arg-type]  # a name that is no string
        flush_metrics()

        assert MetricFeed(registry, run.id, path).pump() == 5
        summaries = {s.key: s for s in registry.metric_summaries(run.id)}
        assert sorted(summaries) == ["5", "a\tb\nc", "big", "huge", "plain"]
        assert (summaries["huge"].value, summaries["huge"].step) == (3.0, None)
        assert (summaries["big"].value, summaries["big"].step) == (4.0, None)
        assert (summaries["a\tb\nc"].value, summaries["a\tb\nc"].step) == (2.0, 7)
        assert (summaries["plain"].value, summaries["plain"].step) == (1.0, None)


def test_frames_wait_while_whole_and_garbage_is_passed(tmp_path: Path) -> None:
    frame = _frame(tmp_path, "loss", 1.0, 1)

    assert read_metric_frames(frame[:-1]) == ([], 0)  # still being written
    frames, used = read_metric_frames(b"junk" + frame + frame[:10])
    assert [names for names, _ in frames] == [["loss"]]
    assert used == 4 + len(frame)
    # Bytes no frame starts with are passed, all but what may begin a frame's mark.
    assert read_metric_frames(b"no frame here")[1] == len(b"no frame here") - 3
