"""Composed tasks on a real local target: every step a recorded run, outputs passed by digest,
exit statuses, caching, timeouts, stop, restart, and a platform that died mid-execution."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.config import Settings
from conveyor.errors import UsageError
from conveyor.orchestrate.tasks import TaskService
from conveyor.platform import Controller, LocalTarget
from conveyor.platform.instance_env import platform_env
from conveyor.platform.isolation import IsolatedSpawner, IsolationUnavailable
from conveyor.repro.openlineage import run_uuid
from conveyor.store.apps import AppRepository
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry
from conveyor.tasks.catalogue import TaskApp
from conveyor.tasks.dsl import TaskDslError
from conveyor.tasks.errors import TaskError
from tests.openlineage_schema import validate_event
from tests.platform.leaks import files_holding
from tests.waiting import eventually_async

pytestmark = pytest.mark.slow

PREPARE = """\
import conveyor
rows = int(conveyor.param("rows", 3))
with open("train.csv", "w") as f:
    f.write("x,y\\n" + "".join(f"{i},{i % 2}\\n" for i in range(rows)))
"""
TRAIN = """\
import conveyor, sys
lines = open("train.csv").read().splitlines()
print("trained", conveyor.param("model", "none"), "on", len(lines) - 1, "rows")
if len(lines) == 1:
    conveyor.exit_status("NO_DATA")
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    values = {
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_DATABASE_URL": f"sqlite:///{home / 'registry.db'}",
        "CONVEYOR_ARTIFACT_ROOT": str(home / "artifacts"),
    }
    with pytest.MonkeyPatch.context() as env:
        for key, value in values.items():
            env.setenv(key, value)
        home.mkdir()
        yield home


def _isolated_target(settings: Settings, registry: Registry) -> LocalTarget:
    """A local target whose steps run sandboxed, as the platform's (``conveyor up``) do."""
    spawner = IsolatedSpawner(settings)
    try:
        spawner.check()
    except IsolationUnavailable as exc:
        reason = f"no isolation works here: {exc}"
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return LocalTarget(AppRepository(registry), base_env=platform_env(), spawner=spawner)


def _run(
    home: Path, work: Callable[[TaskService], Awaitable[None]], *, isolated: bool = False
) -> None:
    settings = Settings.from_env()

    async def main() -> None:
        with Registry(settings.database_url) as registry:
            artifacts = ArtifactStore(settings.artifact_root)
            target = _isolated_target(settings, registry) if isolated else None
            controller = Controller(
                registry, artifacts, home / "platform", target=target, base_env=dict(os.environ)
            )
            service = TaskService(controller, runs_dir=home / "runs")
            try:
                await work(service)
            finally:
                await service.close()
                await controller.target.close()

    asyncio.run(main())


def _files(service: TaskService, folder: Path) -> dict[str, dict[str, Any]]:
    store = service.controller.artifacts
    return {
        p.name: {"digest": store.put_file(p), "mode": 0o644}
        for p in folder.iterdir()
        if p.is_file()
    }


async def _register(service: TaskService, tmp: Path) -> None:
    folder = tmp / "pipeline"
    folder.mkdir(exist_ok=True)
    (folder / "prepare.py").write_text(PREPARE)
    (folder / "train.py").write_text(TRAIN)
    files = _files(service, folder)
    python = sys.executable
    await service.register_app(
        TaskApp("prepare", "command", command=f"{python} prepare.py", files=files)
    )
    await service.register_app(
        TaskApp("train", "command", command=f"{python} train.py", files=files)
    )


def test_a_pipeline_runs_every_step_as_a_recorded_run_and_reuses_it_when_nothing_changed(
    home: Path, tmp_path: Path
) -> None:
    async def work(service: TaskService) -> None:
        await _register(service, tmp_path)
        service.create(
            "nightly",
            "prepare --output=train.csv && <gbm: train --model=gbm --input=@prepare/train.csv"
            " || rf: train --model=rf --input=@prepare/train.csv> && timestamp",
        )
        started = await service.launch("nightly", properties={"app.prepare.rows": "5"})
        done = await service.wait(started["id"])
        assert done["state"] == "COMPLETED", done
        steps = {s["name"]: s for s in done["steps"]}
        assert all(s["run_id"] for s in steps.values())
        assert steps["gbm"]["after"] == ["prepare"]
        logs = {entry["step"]: entry["lines"] for entry in service.log(done["id"])}
        assert logs["gbm"] == ["trained gbm on 5 rows"]
        assert logs["rf"] == ["trained rf on 5 rows"]

        again = await service.wait(
            (await service.launch("nightly", properties={"app.prepare.rows": "5"}))["id"]
        )
        cached = {s["name"]: s["cached"] for s in again["steps"]}
        assert cached == {"prepare": True, "gbm": True, "rf": True, "timestamp": False}
        assert {s["name"]: s["run_id"] for s in again["steps"]}["gbm"] == steps["gbm"]["run_id"]

        fresh = await service.launch("nightly", properties={"app.prepare.rows": "5"}, no_cache=True)
        assert not any(s["cached"] for s in (await service.wait(fresh["id"]))["steps"])

    _run(home, work)


def test_a_step_run_names_its_task_execution_as_its_openlineage_parent(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv("CONVEYOR_OPENLINEAGE", f"file://{events_file}")

    async def work(service: TaskService) -> None:
        service.create("nightly", "extract: shell --command='echo step'")
        done = await service.wait((await service.launch("nightly"))["id"])
        assert done["state"] == "COMPLETED", done
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
        for event in events:
            validate_event(event)
            parent = event["run"]["facets"]["parent"]
            assert parent["run"]["runId"] == run_uuid(done["id"])  # the execution, as a UUID
            assert parent["job"] == {"namespace": "conveyor", "name": "nightly"}
        assert events[-1]["job"]["name"] == "nightly/extract"

    _run(home, work)


def test_a_status_the_step_sets_drives_a_transition(home: Path, tmp_path: Path) -> None:
    async def work(service: TaskService) -> None:
        await _register(service, tmp_path)
        service.create(
            "quiet",
            "prepare --output=train.csv --rows=0 && train --input=@prepare/train.csv "
            "'NO_DATA'->nothing: shell --command='echo nothing to do' && timestamp",
        )
        done = await service.wait((await service.launch("quiet"))["id"])
        states = {s["name"]: (s["state"], s["exit_status"]) for s in done["steps"]}
        assert states["train"] == ("COMPLETED", "NO_DATA")
        assert states["nothing"][0] == "COMPLETED"
        assert states["timestamp"][0] == "SKIPPED"

    _run(home, work)


def test_a_failing_step_fails_the_execution_and_restart_reruns_only_what_failed(
    home: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "fixed"

    async def work(service: TaskService) -> None:
        service.create(
            "flaky",
            f"first: shell --command='echo one' && second: shell --command='test -e {flag}'"
            " && third: shell --command='echo three'",
        )
        done = await service.wait((await service.launch("flaky"))["id"])
        assert done["state"] == "FAILED"
        assert "step 'second' failed" in done["reason"]
        first_run = done["steps"][0]["run_id"]
        flag.touch()
        restarted = await service.wait((await service.restart(done["id"]))["id"])
        assert restarted["state"] == "COMPLETED"
        assert restarted["steps"][0]["run_id"] == first_run
        assert [s["attempts"] for s in restarted["steps"]] == [1, 2, 1]
        with pytest.raises(TaskError, match="nothing failed to restart"):
            await service.restart(done["id"])

    _run(home, work)


def test_stop_kills_the_running_step_and_a_timeout_fails_it(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"

    async def work(service: TaskService) -> None:
        service.create("slow", f"shell --command='touch {marker}; exec sleep 600'")
        started = await service.launch("slow")
        await eventually_async(marker.exists, what="the step to start")
        stopped = await service.stop(started["id"])
        assert stopped["state"] == "STOPPED"
        assert stopped["steps"][0]["state"] == "STOPPED"

        await service.register_app(TaskApp("nap", "command", command="exec sleep 600", timeout=0.5))
        service.create("napping", "nap")
        done = await service.wait((await service.launch("napping"))["id"])
        assert done["state"] == "FAILED"
        assert "timed out after 0.5 s" in done["steps"][0]["reason"]

    _run(home, work)


def test_create_refuses_unknown_apps_options_and_bad_text(home: Path) -> None:
    async def work(service: TaskService) -> None:
        with pytest.raises(UsageError, match="unknown app 'nope'"):
            service.create("t", "timestamp && nope")
        with pytest.raises(UsageError, match="no option --colour"):
            service.create("t", "timestamp --colour=red")
        with pytest.raises(UsageError, match=r"needs --command=\.\.\."):
            service.create("t", "shell")
        with pytest.raises(TaskDslError, match="150E"):
            service.create("t", "timestamp & shell")
        with pytest.raises(TaskDslError, match="123E"):
            service.create("bad.name", "timestamp")

    _run(home, work)


def test_executions_a_killed_platform_left_running_become_restartable(home: Path) -> None:
    async def work(service: TaskService) -> None:
        service.create("t", "timestamp")
        doc = await service.launch("t")
        await service.wait(doc["id"])
        # What a platform killed with -9 leaves behind: a RUNNING document and no executor.
        left = {**service.status(doc["id"]), "state": "RUNNING", "id": "deadbeef0000"}
        left["steps"] = [{**left["steps"][0], "state": "RUNNING"}]
        service.records.save_execution(left)
        assert service.recover() == 1
        after = service.status("deadbeef0000")
        assert (after["state"], after["steps"][0]["state"]) == ("STOPPED", "STOPPED")
        restarted = await service.wait((await service.restart("deadbeef0000"))["id"])
        assert restarted["state"] == "COMPLETED"

    _run(home, work)


def _engine_step(home: Path, folder: Path, script: str, printed: str, config: str) -> str:
    """Run ``script`` as a one-step task; it prints ``printed``; returns its run's engine."""
    folder.mkdir()
    (folder / "job.py").write_text(script)
    engine: list[str] = []

    async def work(service: TaskService) -> None:
        files = _files(service, folder)
        await service.register_app(
            TaskApp("job", "command", command=f"{sys.executable} job.py", files=files)
        )
        service.create("engine-job", "job")
        done = await service.wait((await service.launch("engine-job"))["id"])
        assert done["state"] == "COMPLETED", done
        assert printed in service.log(done["id"])[0]["lines"]
        run = service.controller.state.registry.get_run(done["steps"][0]["run_id"])
        assert config in run.params["batch.config"]
        assert run.params["batch.version"]
        engine.append(run.params["batch.engine"])

    _run(home, work)
    return engine[0]


def test_a_dask_step_records_its_engine_in_its_run(home: Path, tmp_path: Path) -> None:
    script = (
        "import conveyor\n"
        "client = conveyor.batch.dask()\n"
        "print('total', client.submit(sum, range(10)).result())\n"
        "client.close()\n"
    )
    assert _engine_step(home, tmp_path / "dask-app", script, "total 45", "LocalCluster") == "dask"


@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None, reason="the spark extra is not installed"
)
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java and there is none")
def test_a_spark_step_records_its_engine_in_its_run(home: Path, tmp_path: Path) -> None:
    script = (
        "import conveyor\n"
        "spark = conveyor.batch.spark()\n"
        "print('rows', spark.range(100).count())\n"
        "spark.stop()\n"
    )
    assert _engine_step(home, tmp_path / "spark-app", script, "rows 100", "local[*]") == "spark"


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed"
)
def test_a_ray_step_records_its_engine_in_its_run(home: Path, tmp_path: Path) -> None:
    script = (
        "import conveyor\n"
        "ray = conveyor.batch.ray(num_cpus=1)\n"
        "square = ray.remote(lambda x: x * x)\n"
        "print('squares', sum(ray.get([square.remote(i) for i in range(10)])))\n"
        "ray.shutdown()\n"
    )
    assert _engine_step(home, tmp_path / "ray-app", script, "squares 285", '"local"') == "ray"


SNOOP = """\
import json, os, signal
import conveyor
tried = {{}}
for name, path in {paths!r}.items():
    try:
        open(path, "rb").read(1)
        tried[name] = "read"
    except OSError as exc:
        tried[name] = type(exc).__name__
rows = len(open(conveyor.input("train.csv")).read().splitlines()) - 1
secrets = sorted(k for k in os.environ if k in ("CONVEYOR_HOME", "CONVEYOR_DATABASE_URL"))
with open(conveyor.output("report.json"), "w") as f:
    json.dump({{"tried": tried, "rows": rows, "variables": secrets}}, f)
"""


def test_a_step_runs_sandboxed_it_reads_its_inputs_and_writes_its_outputs_but_nothing_else(
    home: Path, tmp_path: Path
) -> None:
    token = home / "platform" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("platform-token\n")

    async def work(service: TaskService) -> None:
        await _register(service, tmp_path)
        service.create("other", "shell --command='echo secret > secret.txt'")
        other = await service.wait((await service.launch("other"))["id"])
        assert other["state"] == "COMPLETED", other
        paths = {
            "registry": str(home / "registry.db"),
            "token": str(token),
            "artifacts": str(home / "artifacts"),
            "other task's folder": str(
                next((home / "platform" / "task-work" / other["id"]).glob("*/secret.txt"))
            ),
        }
        folder = tmp_path / "snoop"
        folder.mkdir()
        (folder / "snoop.py").write_text(SNOOP.format(paths=paths))
        await service.register_app(
            TaskApp(
                "snoop",
                "command",
                command="python snoop.py",  # no requirements: the platform's interpreter
                files=_files(service, folder),
            )
        )
        service.create("nosy", "prepare --output=train.csv && snoop --input=@prepare/train.csv")
        done = await service.wait(
            (await service.launch("nosy", properties={"app.prepare.rows": "4"}))["id"]
        )
        assert done["state"] == "COMPLETED", done
        run = service.controller.state.registry.get_run(done["steps"][1]["run_id"])
        (report,) = [f for f in run.outputs() if f.path == "report.json"]
        found = json.loads(service.controller.artifacts.read_bytes(report.digest))
        assert found == {
            "tried": {
                "registry": "FileNotFoundError",
                "token": "FileNotFoundError",
                "artifacts": "FileNotFoundError",
                "other task's folder": "FileNotFoundError",
            },
            "rows": 4,
            "variables": [],
        }
        assert [f.path for f in run.inputs()] == ["train.csv"]
        # The code is the app's files: not the input restored beside them, nor the output.
        manifest = service.controller.artifacts.read_json(run.code["snapshot"])
        assert [f["path"] for f in manifest["files"]] == ["snoop.py"]

    _run(home, work, isolated=True)


def test_a_sql_step_writes_with_the_password_of_its_url_which_the_registry_keeps_sealed(
    home: Path, postgres_url: str
) -> None:
    password = "pw-task-5e1d-sealed"  # trust auth: PostgreSQL takes any password here
    url = postgres_url.replace("postgres@", f"postgres:{password}@", 1)
    query = "create table loaded (n int); insert into loaded values (7)"

    async def work(service: TaskService) -> None:
        created = service.create(
            "load",
            f"write: shell --command='echo \"{query}\" > q.sql' --output=q.sql"
            f" && load: sql --url='{url}' --file=q.sql --input=@write/q.sql",
        )
        assert password not in json.dumps(created)
        assert "postgres:***@" in created["definition"]
        done = await service.wait((await service.launch("load"))["id"])
        assert done["state"] == "COMPLETED", done
        assert password not in json.dumps([done, service.list_tasks(), service.info("load")])
        run = service.controller.state.registry.get_run(done["steps"][1]["run_id"])
        assert run.params["url"] == url.replace(password, "***")

    _run(home, work)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select n from loaded")).scalars().all() == [7]
    engine.dispose()
    assert (home / "registry.db").is_file()
    assert files_holding(home, password) == []  # the registry, its WAL, the runs' files
