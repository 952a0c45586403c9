"""The registry behaves the same on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest

from conveyor.config import Settings
from conveyor.errors import (
    ConfigError,
    NotFoundError,
    RegistryUnavailable,
    RunError,
    UsageError,
)
from conveyor.store.records import FileRecord, MetricRecord, ModelRecord, RunRecord, RunStatus
from conveyor.store.registry import HEAD_REVISION, Registry


def make_run(run_id: str | None = None, **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "id": run_id or uuid.uuid4().hex,
        "name": "train",
        "status": RunStatus.RUNNING,
        "command": ["python", "train.py"],
        "cwd": "/tmp/project",
        "started_at": time.time(),
        "seed": 1234,
        "host": "testhost",
        "code": {"commit": "abc", "snapshot": "blake3:" + "0" * 64},
        "environment": {"python": "3.11.7"},
        "params": {"n_estimators": 200},
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_fresh_database_is_migrated_to_head(registry: Registry) -> None:
    assert registry.current_revision() == HEAD_REVISION


def test_run_round_trip(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    registry.add_params(run.id, {"lr": 0.1})
    registry.add_metrics(
        run.id,
        [MetricRecord("loss", 0.5, 1, 1.0), MetricRecord("loss", 0.25, 2, 2.0)],
    )
    registry.add_files(run.id, [FileRecord("output", "model.skops", "blake3:" + "1" * 64, 10)])
    registry.add_model(
        ModelRecord(run.id, "model", "model.skops", "sklearn", "blake3:" + "1" * 64, {"a": 1})
    )
    registry.finish_run(run.id, RunStatus.FINISHED, ended_at=run.started_at + 2, exit_code=0)

    got = registry.get_run(run.id[:6])
    assert got.status is RunStatus.FINISHED
    assert got.params == {"lr": 0.1, "n_estimators": 200}
    assert got.latest_metrics() == {"loss": 0.25}
    assert got.outputs()[0].path == "model.skops"
    assert got.models[0].signature == {"a": 1}
    assert got.duration == pytest.approx(2)
    assert registry.get_model(run.id, "model").format == "sklearn"
    assert "blake3:" + "1" * 64 in registry.referenced_digests()


def test_finished_run_is_immutable(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    registry.finish_run(run.id, RunStatus.FAILED, ended_at=time.time(), exit_code=3)
    with pytest.raises(RunError, match="already FAILED"):
        registry.finish_run(run.id, RunStatus.FINISHED, ended_at=time.time())


def test_param_cannot_take_two_values(registry: Registry) -> None:
    run = make_run()
    registry.create_run(run)
    registry.add_params(run.id, {"n_estimators": 200})  # same value again is fine
    with pytest.raises(UsageError, match="already 200"):
        registry.add_params(run.id, {"n_estimators": 300})


def test_unknown_and_ambiguous_ids(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="no run with id abc"):
        registry.get_run("abc")
    with pytest.raises(NotFoundError, match="not a run id"):
        registry.get_run("../etc")
    registry.create_run(make_run("aa" + "1" * 30))
    registry.create_run(make_run("aa" + "2" * 30))
    with pytest.raises(NotFoundError, match="ambiguous"):
        registry.get_run("aa")
    with pytest.raises(NotFoundError, match="no model named"):
        registry.get_model("aa1", "model")


def test_list_runs_newest_first(registry: Registry) -> None:
    old = make_run(started_at=1000.0)
    new = make_run(started_at=2000.0)
    registry.create_run(old)
    registry.create_run(new)
    registry.add_metrics(new.id, [MetricRecord("auc", 0.9, None, 2001.0)])
    listed = registry.list_runs()
    assert [r.id for r in listed] == [new.id, old.id]
    assert listed[0].latest_metrics() == {"auc": 0.9}


def _record_one(url: str, run_id: str) -> None:
    reg = Registry(url)
    reg.create_run(make_run(run_id))
    for step in range(20):
        reg.add_metrics(run_id, [MetricRecord("x", float(step), step, time.time())])
    reg.finish_run(run_id, RunStatus.FINISHED, ended_at=time.time(), exit_code=0)
    reg.close()


def test_two_runs_at_the_same_time_are_both_recorded(db_url: str) -> None:
    Registry(db_url).close()  # migrate once, as the CLI does before forking work
    ids = [uuid.uuid4().hex for _ in range(2)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_one, args=(db_url, i)) for i in ids]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with Registry(db_url) as reg:
        for run_id in ids:
            run = reg.get_run(run_id)
            assert run.status is RunStatus.FINISHED
            assert run.latest_metrics() == {"x": 19.0}
            assert [s.count for s in reg.metric_summaries(run_id)] == [20]
            assert len(reg.metric_history(run_id, "x", max_points=100)) == 20


def test_database_that_does_not_answer() -> None:
    with pytest.raises(RegistryUnavailable, match="does not answer"):
        Registry("postgresql+psycopg://nobody@127.0.0.1:1/nothing")


def test_malformed_url() -> None:
    with pytest.raises(RegistryUnavailable, match="not a database URL"):
        Registry("not a url")


def test_artifact_uses_name_each_run_role_and_source(registry: Registry) -> None:
    snapshot, out = "blake3:" + "2" * 64, "blake3:" + "3" * 64
    run = make_run(cwd="/work/p", code={"snapshot": snapshot, "root": "/work"})
    registry.create_run(run)
    registry.add_files(run.id, [FileRecord("output", "out/m.bin", out, 3)])
    registry.finish_run(run.id, RunStatus.FINISHED, ended_at=time.time(), stdout_digest=out)

    uses = {(u.role, u.digest, u.path) for u in registry.artifact_uses() if u.run_id == run.id}

    assert uses == {
        ("snapshot", snapshot, "/work"),
        ("output", out, "/work/p/out/m.bin"),
        ("stdout", out, None),
    }
    assert registry.snapshot_digests() == {snapshot}
    assert {snapshot, out} <= registry.referenced_digests()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_aliases_mean_psycopg(scheme: str) -> None:
    settings = Settings.from_env({"CONVEYOR_DATABASE_URL": f"{scheme}://me@db.example/conveyor"})
    assert settings.database_url == "postgresql+psycopg://me@db.example/conveyor"


@pytest.mark.postgres
def test_a_postgres_url_opens_the_registry(postgres_url: str) -> None:
    alias = "postgres://" + postgres_url.split("://", 1)[1]
    with Registry(alias) as reg:
        reg.create_run(make_run("a1"))
        assert reg.get_run("a1").status is RunStatus.RUNNING


def test_a_driver_that_is_not_installed_names_the_package() -> None:
    with pytest.raises(ConfigError) as caught:
        Registry("mysql://me:secret@127.0.0.1/conveyor")
    message = str(caught.value)
    assert "pip install mysqlclient" in message
    assert "secret" not in message
    assert "\n" not in message


def test_an_unknown_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'nosuchdb' is not a database"):
        Registry("nosuchdb://somewhere/x")
