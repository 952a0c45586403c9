"""The controller against a scripted target: what it records, and what it asks the target to run.

No process starts here: the target is the seam a Kubernetes target plugs
into, and a fake one shows what the controller hands over through it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform import views
from conveyor.platform.controller import Controller
from conveyor.platform.errors import DeployError, PlatformError
from conveyor.platform.kinds import Files, Launch, Staging, register_kind
from conveyor.platform.logs import LogBuffer
from conveyor.platform.routes import Route, RouteTable, overlaps
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec
from conveyor.platform.split import Measure
from conveyor.platform.supervisor import EventSink
from conveyor.platform.target import InstanceStatus, LaunchResult, Progress, Release
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import ModelRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry


class ScriptedTarget:
    """Remembers what it was asked to run; a deploy fails while ``failing`` says why."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[Release, int]] = {}
        self.failing: str | None = None
        self.buffers: dict[str, LogBuffer] = {}
        self.statuses: dict[str, list[InstanceStatus]] = {}
        #: Canaries running: app -> (release, instances, weight).
        self.canaries: dict[str, tuple[Release, int, int]] = {}
        #: What the router measures in each coming window (a test's script).
        self.windows: list[dict[int, Measure]] = []

    def watch(self, sink: EventSink) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def restore(self, release: Release, instances: int) -> None:
        self.running[release.app] = (release, instances)

    async def deploy(self, release: Release, instances: int, progress: Progress) -> None:
        if self.failing:
            raise DeployError(
                f"revision {release.revision} failed",
                reason=self.failing,
                lines=["[0/err] loading model.skops", "[0/err] error: model.skops is damaged"],
            )
        self.running[release.app] = (release, instances)

    async def start_canary(
        self, release: Release, instances: int, progress: Progress, *, stable: int, weight: int
    ) -> None:
        if self.failing:
            raise DeployError(f"revision {release.revision} failed", reason=self.failing)
        self.canaries[release.app] = (release, instances, weight)

    def set_canary_weight(self, app: str, weight: int) -> None:
        release, instances, _ = self.canaries[app]
        self.canaries[app] = (release, instances, weight)

    def canary_window(self, app: str) -> dict[int, Measure]:
        return self.windows.pop(0) if self.windows else {}

    async def end_canary(self, release: Release) -> None:
        canary = self.canaries.pop(release.app, None)
        kept = canary is not None and canary[0].revision == release.revision
        count = canary[1] if canary is not None and kept else self.running[release.app][1]
        self.running[release.app] = (release, count)

    async def scale(self, release: Release, instances: int) -> None:
        canary = self.canaries.get(release.app)
        if canary is not None and canary[0].revision == release.revision:
            self.canaries[release.app] = (release, instances, canary[2])
        else:
            self.running[release.app] = (release, instances)

    async def stop(self, app: str) -> None:
        release, _ = self.running[app]
        self.running[app] = (release, 0)

    async def undeploy(self, app: str) -> None:
        self.running.pop(app, None)

    def status(self, app: str, *, usage: bool = False) -> list[InstanceStatus]:
        return self.statuses.get(app, [])

    def routes(self, app: str) -> list[Route]:
        return list(self.running[app][0].routes) if app in self.running else []

    def route_owner(self, route: Route) -> str | None:
        for release, _ in self.running.values():
            if release.app != route.app and any(overlaps(route, r) for r in release.routes):
                return release.app
        return None

    def logs(self, app: str) -> LogBuffer:
        return self.buffers.setdefault(app, LogBuffer(100))

    async def launch(self, release: Release, *, index: int = 0) -> LaunchResult:
        return LaunchResult(0, [])


class EchoKind:
    """A kind made up by this test: one module's worth of code is all a new kind needs."""

    name = "echo"
    pushable = True
    keeps_set_env = True

    def check(self, spec: AppSpec, files: Files | None) -> None:
        pass

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        return None

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        return Launch(("echo", str(spec.options["word"])), env={"ECHO": "1"})

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        return HealthCheckSpec(type="process")


register_kind(EchoKind())


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        yield Controller(
            registry, ArtifactStore(tmp_path / "artifacts"), tmp_path, target=ScriptedTarget()
        )


def run(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(work())


def target_of(controller: Controller) -> ScriptedTarget:
    target = controller.target
    assert isinstance(target, ScriptedTarget)
    return target


def recorded_model(controller: Controller, run_id: str) -> Path:
    """A run that saved a model called ``model``, in the controller's registry; its blob's file."""
    digest = controller.artifacts.put_bytes(b"a model's bytes")
    controller.state.registry.create_run(
        RunRecord(
            id=run_id,
            name="train",
            status=RunStatus.FINISHED,
            command=["python", "train.py"],
            cwd="/",
            started_at=0.0,
            seed=0,
            host="here",
            code={},
            environment={},
        )
    )
    controller.state.registry.add_model(
        ModelRecord(run_id, "model", "model.skops", "skops", digest, None)
    )
    return controller.dir / "run-models" / (digest.partition(":")[2] + ".skops")


def test_a_push_records_a_revision_and_hands_the_target_what_the_kind_says(
    controller: Controller,
) -> None:
    run_id = "3f2a9c" + "0" * 26
    exported = recorded_model(controller, run_id)
    spec = AppSpec(name="iris", model="run:3f2a9c/model", env={"LEVEL": "info"})

    async def work() -> None:
        done = await controller.push(spec, None, 2, lambda _m: None)
        assert (done.revision, done.instances) == (1, 2)

    run(work)
    release, instances = target_of(controller).running["iris"]
    assert instances == 2
    # The instance cannot read the registry: it is handed the run's model file, run id
    # and digest (which it checks again when it loads the file).
    options = release.command[release.command.index(str(exported)) + 1 :]
    digest = "blake3:" + exported.stem
    assert options == ("--name", "model", "--run-id", run_id, "--expect-digest", digest)
    assert release.read_only == (exported,)
    assert exported.read_bytes() == b"a model's bytes"
    assert (release.health.type, release.health.endpoint) == ("http", "/v2/health/ready")
    assert release.env["LEVEL"] == "info"
    assert [r.text for r in release.routes] == ["/iris", "iris.localhost"]
    assert controller.spec(controller.state.revision("iris", 1)) == spec
    assert [e.kind for e in controller.state.events("iris")] == ["pushed", "deployed"]


def test_a_failed_deploy_is_an_event_and_leaves_the_app_as_it_was(
    controller: Controller,
) -> None:
    target_of(controller).failing = "instance 0 crashed 4 times"
    blob = {"digest": controller.artifacts.put_bytes(b"onnx"), "mode": 0o644}

    def noop(_message: str) -> None:
        pass

    async def work() -> None:
        with pytest.raises(DeployError):
            await controller.push(AppSpec(name="w", model="m.onnx"), {"m.onnx": blob}, 1, noop)

    run(work)
    app = controller.state.app("w")
    assert (app.state, app.revision) == ("stopped", 0)
    failed = controller.state.events("w")[-1]
    assert (failed.kind, failed.details["reason"]) == (
        "deploy-failed",
        "instance 0 crashed 4 times",
    )
    (shown,) = views.list_apps(controller)
    assert (shown["state"], shown["revision"], shown["failed_revision"]) == ("crashed", 0, 1)
    assert shown["cause"] == (
        "instance 0 crashed 4 times; last output: [0/err] error: model.skops is damaged"
    )
    assert views.describe(controller, "w")["last_lines"][-1].endswith("is damaged")


def test_an_app_whose_instances_crash_loop_shows_crashed_with_the_cause(
    controller: Controller,
) -> None:
    recorded_model(controller, "1" * 32)
    run(lambda: _push(controller, AppSpec(name="loop", model="run:1/model")))
    looping = InstanceStatus(
        index=0, revision=1, state="STARTING", ready=False, since=0.0, host="127.0.0.1",
        port=None, pid=None, restarts=5,
        last_crash={"reason": "exited with status 1", "last_lines": ["error: no model m"]},
    )  # fmt: skip
    target_of(controller).statuses["loop"] = [looping]
    (shown,) = views.list_apps(controller)
    assert (shown["state"], shown["failed_revision"]) == ("crashed", 1)
    assert shown["cause"] == "exited with status 1; last output: error: no model m"
    ready = dataclasses.replace(looping, state="RUNNING", ready=True)
    target_of(controller).statuses["loop"] = [ready]
    assert views.list_apps(controller)[0]["state"] == "running"
    assert views.list_apps(controller)[0]["cause"] is None


async def _push(controller: Controller, spec: AppSpec) -> None:
    await controller.push(spec, None, 1, lambda _m: None)


def test_set_env_waits_for_restart_and_a_new_kind_runs_what_it_says(
    controller: Controller,
) -> None:
    spec = AppSpec(name="hi", kind="echo", options={"word": "hello"}, routes=())

    async def work() -> None:
        await controller.push(spec, None, 1, lambda _m: None)
        assert await controller.set_env("hi", {"A": "1"}, []) == 2
        assert "A" not in target_of(controller).running["hi"][0].env
        await controller.restart("hi", lambda _m: None)

    run(work)
    release, _ = target_of(controller).running["hi"]
    assert (release.revision, release.command, release.routes) == (2, ("echo", "hello"), ())
    assert (release.env["A"], release.env["ECHO"], release.health.type) == ("1", "1", "process")


def test_a_route_another_app_holds_is_refused_before_anything_is_staged(
    controller: Controller,
) -> None:
    recorded_model(controller, "1" * 32)

    async def work() -> None:
        await controller.push(AppSpec(name="a", model="run:1/model"), None, 1, lambda _m: None)
        taken = AppSpec(name="b", model="run:1/model", routes=(RouteSpec(path="/a"),))
        with pytest.raises(PlatformError, match="route /a is already taken by app 'a'"):
            await controller.push(taken, None, 1, lambda _m: None)

    run(work)
    assert controller.state.find_app("b") is None


def test_a_route_under_another_apps_route_is_refused_and_names_its_owner(
    controller: Controller,
) -> None:
    recorded_model(controller, "1" * 32)

    async def work() -> None:
        await controller.push(AppSpec(name="sc", model="run:1/model"), None, 1, lambda _m: None)
        for routes, theirs in [
            ((RouteSpec(path="/sc/predict"),), "/sc"),
            ((RouteSpec(host="sc.localhost", path="/predict"),), "sc.localhost"),
        ]:
            thief = AppSpec(name="stream-http", model="run:1/model", routes=routes)
            with pytest.raises(PlatformError) as caught:
                await controller.push(thief, None, 1, lambda _m: None)
            assert f"overlaps route {theirs} of app 'sc'" in caught.value.message
        wide = AppSpec(name="wide", model="run:1/model", routes=(RouteSpec(path="/s"),))
        await controller.push(wide, None, 1, lambda _m: None)  # /sc is not under /s
        inner = AppSpec(name="sc", model="run:1/model", routes=(RouteSpec(path="/sc/v2"),))
        await controller.push(inner, None, 1, lambda _m: None)  # its own routes may nest
        over = AppSpec(name="all", model="run:1/model", routes=(RouteSpec(path="/s/x"),))
        with pytest.raises(PlatformError, match="overlaps route /s of app 'wide'"):
            await controller.push(over, None, 1, lambda _m: None)

    run(work)
    assert controller.state.find_app("stream-http") is None


def test_the_route_table_finds_overlaps_but_the_root_is_a_catch_all() -> None:
    table = RouteTable()
    table.set_routes("sc", [Route("sc", path="/sc"), Route("sc", host="sc.localhost")])
    table.set_routes("catch", [Route("catch", path="/")])
    assert table.overlapping(Route("s", path="/sc/predict")) == Route("sc", path="/sc")
    assert table.overlapping(Route("s", path="/")) == Route("catch", path="/")
    assert table.overlapping(Route("s", path="/scores")) is None
    assert table.overlapping(Route("s", host="sc.localhost", path="/x")) is not None
    assert table.overlapping(Route("s", host="other.localhost", path="/sc")) is None
    assert table.overlapping(Route("sc", path="/sc/predict")) is None  # its own
