"""Run management in the registry: search expressions, experiments, tags, soft deletion.

Every test runs on SQLite and on PostgreSQL (the ``registry`` fixture).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor.errors import NotFoundError, UsageError
from conveyor.store.listing import RunFilter
from conveyor.store.records import FileRecord, MetricRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry
from conveyor.store.search import SearchError


def _run(
    reg: Registry,
    number: int,
    *,
    name: str = "train",
    experiment: str | None = "churn",
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    status: RunStatus = RunStatus.FINISHED,
    files: list[FileRecord] | None = None,
) -> str:
    run_id = _id(number)
    reg.create_run(
        RunRecord(
            id=run_id,
            name=name,
            status=RunStatus.RUNNING,
            command=["python", "train.py"],
            cwd="/tmp/project",
            started_at=1_700_000_000.0 + number,
            seed=number,
            host="testhost",
            code={},
            environment={},
            experiment=experiment,
        )
    )
    reg.complete_run(
        run_id,
        status,
        ended_at=1_700_000_000.0 + number + 5,
        exit_code=0 if status is RunStatus.FINISHED else 1,
        error=None,
        environment={},
        params=params or {},
        metric_records=[MetricRecord(k, v, 0, time.time()) for k, v in (metrics or {}).items()],
        files=files or [],
        models=[],
        stdout_digest=None,
        stderr_digest=None,
    )
    return run_id


def _id(number: int) -> str:
    """A run id whose first two characters tell the test's runs apart."""
    return f"{number:02x}" + "c" * 30


def _ids(reg: Registry, where: str | None = None, **only: Any) -> list[int]:
    page = reg.list_runs_page(limit=100, only=RunFilter(where=where, **only))
    return sorted(int(r.id[:2], 16) for r in page.runs)


@pytest.fixture
def runs(registry: Registry) -> Registry:
    _run(registry, 1, params={"n_estimators": 100, "model": "rf"}, metrics={"auc": 0.85})
    _run(registry, 2, params={"n_estimators": 200, "model": "rf"}, metrics={"auc": 0.93})
    _run(registry, 3, params={"n_estimators": 300, "model": "gbm"}, metrics={"auc": 0.95})
    _run(
        registry,
        4,
        name="rf-big",
        params={"n_estimators": "many", "scale": True},
        metrics={"auc": 0.99},
        experiment="fraud",
        status=RunStatus.FAILED,
    )
    registry.set_tags(_id(3), {"stage": "prod"})
    registry.set_tags(_id(2), {"stage": "dev", "owner": "ana"})
    return registry


def test_the_example_search_selects_the_runs_it_says(runs: Registry) -> None:
    where = "params.n_estimators >= 200 and metrics.auc > 0.9 and tags.stage = 'prod'"
    assert _ids(runs, where) == [3]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("params.n_estimators > 150", [2, 3]),  # the text "many" is not a number: not matched
        ("params.model = 'rf'", [1, 2]),
        ("params.model != 'rf'", [3]),
        ("params.scale = true", [4]),
        ("metrics.auc <= 0.93", [1, 2]),
        ("metrics.auc > 0.9 or params.model = 'rf'", [1, 2, 3, 4]),
        ("not tags.stage = 'prod'", [1, 2, 4]),
        ("(tags.stage = 'prod' or tags.owner = 'ana') and metrics.auc > 0.94", [3]),
        ("name like 'RF-%'", [4]),
        ("status = 'failed'", [4]),
        ("attributes.experiment = 'fraud'", [4]),
        ("started > 1700000002", [3, 4]),
        ("started < '2023-11-14'", []),
        ("tags.`owner` = 'ana'", [2]),
        ("params.model like 'g%'", [3]),
        ("metrics.missing > 0", []),
    ],
)
def test_each_kind_of_condition(runs: Registry, where: str, expected: list[int]) -> None:
    assert _ids(runs, where) == expected


def test_experiment_and_status_filters_combine_with_a_search(runs: Registry) -> None:
    assert _ids(runs, experiment="churn") == [1, 2, 3]
    assert _ids(runs, "metrics.auc > 0.9", experiment="churn") == [2, 3]
    assert _ids(runs, status=RunStatus.FAILED) == [4]


@pytest.mark.parametrize(
    ("where", "position", "words"),
    [
        ("metrics.auc >", 13, "expected a value"),
        ("metrics.auc > 0.9 and", 21, "expected an attribute"),
        ("metrics.auc > 'high'", 14, "is a number"),
        ("colour = 'red'", 0, "not an attribute of a run"),
        ("params.x = 'open", 11, "no closing '"),
        ("(metrics.auc > 1", 16, "expected ')'"),
        ("metrics.auc ~ 1", 12, "is not part of"),
        ("status = 'done'", 9, "not a run status"),
        ("__import__('os').system('x') = 1", 16, "is not part of"),
        ("name = 'a' metrics.auc > 1", 11, "expected 'and', 'or' or the end"),
    ],
)
def test_a_malformed_search_names_the_position_with_a_caret(
    registry: Registry, where: str, position: int, words: str
) -> None:
    with pytest.raises(SearchError) as caught:
        registry.list_runs_page(only=RunFilter(where=where))
    message = caught.value.message
    assert f"position {position}" in message
    assert words in message
    lines = message.splitlines()
    assert lines[-1].index("^") - 2 == position  # the caret under the character
    assert isinstance(caught.value, UsageError)


def test_values_are_bound_never_spliced_into_sql(runs: Registry) -> None:
    assert _ids(runs, "params.model = 'rf'' or 1=1 --'") == []
    assert _ids(runs) == [1, 2, 3, 4]  # and nothing was harmed


def test_tags_are_set_replaced_and_removed(runs: Registry) -> None:
    run_id = _id(2)
    runs.set_tags(run_id[:2], {"stage": "prod"})  # a unique prefix of the id is enough
    assert runs.get_run(run_id).tags == {"owner": "ana", "stage": "prod"}
    runs.remove_tags(run_id, ["owner"])
    assert runs.get_run(run_id).tags == {"stage": "prod"}
    with pytest.raises(UsageError, match="has no tag 'owner'"):
        runs.remove_tags(run_id, ["owner"])
    with pytest.raises(UsageError, match="not a tag name"):
        runs.set_tags(run_id, {"a=b": "c"})
    with pytest.raises(NotFoundError):
        runs.set_tags("ffff", {"a": "b"})


def test_a_deleted_run_is_hidden_listed_with_deleted_and_restorable(runs: Registry) -> None:
    run_id = _id(3)
    runs.delete_run(run_id)
    assert _ids(runs) == [1, 2, 4]
    assert _ids(runs, "tags.stage = 'prod'") == []
    assert _ids(runs, deleted=True) == [3]
    assert runs.get_run(run_id).deleted_at is not None  # still readable by its id
    with pytest.raises(UsageError, match="already deleted"):
        runs.delete_run(run_id)
    runs.delete_run(run_id, restore=True)
    assert _ids(runs) == [1, 2, 3, 4]
    with pytest.raises(UsageError, match="not deleted"):
        runs.delete_run(run_id, restore=True)


def test_purging_removes_only_deleted_runs(runs: Registry) -> None:
    runs.delete_run(_id(1))
    assert runs.purge_deleted() == 1
    with pytest.raises(NotFoundError):
        runs.get_run(_id(1))
    assert _ids(runs) == [2, 3, 4]
    assert runs.purge_deleted() == 0


def test_deleted_runs_keep_no_artifact_alive_but_shared_ones_stay(registry: Registry) -> None:
    only_mine = FileRecord("output", "model.bin", "blake3:" + "a" * 64, 3)
    shared = FileRecord("input", "data.csv", "blake3:" + "b" * 64, 3)
    gone = _run(registry, 1, files=[only_mine, shared])
    _run(registry, 2, files=[shared])

    registry.delete_run(gone)

    live = registry.referenced_digests()
    assert shared.digest in live
    assert only_mine.digest not in live


def test_sorting_by_a_metric_and_by_name(runs: Registry) -> None:
    by_auc = runs.list_runs_page(limit=10, sort="metrics.auc", descending=False).runs
    assert [int(r.id[:2], 16) for r in by_auc] == [1, 2, 3, 4]
    by_name = runs.list_runs_page(limit=2, sort="name", descending=True)
    assert by_name.runs[0].name == "train"
    assert by_name.more
    assert by_name.next is None  # no cursor when sorted by anything but the start
    with pytest.raises(UsageError, match="cannot be sorted by 'colour'"):
        runs.list_runs_page(sort="colour")
