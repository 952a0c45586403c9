"""`runs diff` and `runs show` say what truly differs and summarise what was logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.output import run_details
from conveyor.repro.compare import diff_runs
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import MetricRecord, RunRecord, RunStatus

OPENBLAS = {"internal_api": "openblas", "version": "0.3.27", "num_threads": 2, "prefix": "libscipy"}
OPENMP = {"internal_api": "openmp", "version": None, "num_threads": 2, "prefix": "libgomp"}


def run(run_id: str, blas: list[dict[str, Any]], metrics: tuple[float, ...] = ()) -> RunRecord:
    return RunRecord(
        id=run_id, name="train", status=RunStatus.FINISHED, command=["python", "train.py"],
        cwd="/work", started_at=1.0, seed=7, host="box", code={}, environment={"blas": blas},
        metrics=[MetricRecord("loss", v, step, 10.0 + step) for step, v in enumerate(metrics)],
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_the_same_blas_libraries_in_another_order_are_no_difference(store: ArtifactStore) -> None:
    a, b = run("a" * 32, [OPENBLAS, OPENMP]), run("b" * 32, [OPENMP, OPENBLAS])
    assert diff_runs(a, b, store) == []


def test_another_blas_library_is_a_difference(store: ArtifactStore) -> None:
    other = {**OPENBLAS, "version": "0.3.28"}
    a, b = run("a" * 32, [OPENBLAS, OPENMP]), run("b" * 32, [OPENMP, other])
    [section] = diff_runs(a, b, store)
    assert section.title == "Environment"
    assert [what for what, _, _ in section.rows] == ["blas"]


def test_runs_show_summarises_each_metric_on_one_line(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    run_details(run("a" * 32, [], (0.9, 0.25, 0.4, 0.3)), store, as_json=False, packages=False)
    shown = capsys.readouterr().out
    assert "loss = 0.3  (4 values, min 0.25, max 0.9)" in shown
