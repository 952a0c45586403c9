"""Canary releases decided by the controller, on a fake clock with scripted router measurements.

No process starts here: the scripted target records what it is asked to run
and hands the watcher one window of measurements per call, so every rule
(roll back on errors, on p95, promote after a healthy period, ignore windows
too small to judge) plays out without any real time passing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import NotFoundError
from conveyor.platform import views
from conveyor.platform.canary import CanaryPolicy, verdict
from conveyor.platform.clock import FakeClock, settle
from conveyor.platform.controller import Controller
from conveyor.platform.errors import DeployError, ManifestError, PlatformError
from conveyor.platform.manifest import parse_manifest
from conveyor.platform.router import Meter
from conveyor.platform.routes import RouteTable
from conveyor.platform.spec import AppSpec
from conveyor.platform.split import Measure, Split
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry
from tests.platform.test_controller import ScriptedTarget, target_of

ECHO = AppSpec(name="echo", kind="echo", options={"word": "one"})
TWO = AppSpec(name="echo", kind="echo", options={"word": "two"})


def quiet(_message: str) -> None:
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def scripted(tmp_path: Path, clock: FakeClock, target: ScriptedTarget) -> Iterator[Controller]:
    """A controller of ``target`` on ``clock`` (its router meter too), in ``tmp_path``."""
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        yield Controller(
            registry,
            ArtifactStore(tmp_path / "artifacts"),
            tmp_path,
            target=target,
            meter=Meter(now=clock.now),
            clock=clock,
        )


@pytest.fixture
def controller(tmp_path: Path, clock: FakeClock) -> Iterator[Controller]:
    yield from scripted(tmp_path, clock, ScriptedTarget())


def kinds(controller: Controller) -> list[str]:
    return [e.kind for e in controller.state.events("echo", limit=100)]


def last(controller: Controller, kind: str) -> dict[str, object]:
    event = controller.state.last_event("echo", kind)
    assert event is not None, f"no {kind} event in {kinds(controller)}"
    return dict(event.details)


async def with_canary(controller: Controller, policy: CanaryPolicy) -> None:
    await controller.push(ECHO, None, 2, quiet)
    done = await controller.push(TWO, None, 2, quiet, canary=policy)
    assert done.message == "canary revision 2 gets 10 % of requests, revision 1 the rest"
    await settle()  # the watcher starts its first window


def healthy(current: int = 900, new: int = 100) -> dict[int, Measure]:
    return {1: Measure(current, 1, 20.0), 2: Measure(new, 0, 21.0)}


# -- refusals ------------------------------------------------------------------------------


def test_a_canary_needs_a_running_revision_and_only_one_runs_at_a_time(
    controller: Controller,
) -> None:
    async def work() -> None:
        with pytest.raises(PlatformError, match="no running revision to compare"):
            await controller.push(ECHO, None, 1, quiet, canary=CanaryPolicy())
        assert controller.state.find_app("echo") is None  # refused before anything was staged
        await with_canary(controller, CanaryPolicy(rollback=False))
        with pytest.raises(PlatformError, match=r"has a canary running .* a second canary waits"):
            await controller.push(ECHO, None, 1, quiet, canary=CanaryPolicy())
        with pytest.raises(PlatformError, match="a push waits until it ends"):
            await controller.push(ECHO, None, 1, quiet)
        with pytest.raises(PlatformError, match="a restart waits"):
            await controller.restart("echo", quiet)
        with pytest.raises(NotFoundError, match=r"no app named|no canary"):
            await controller.canaries.promote("nope")

    asyncio.run(work())
    assert [r.number for r in controller.state.revisions("echo")] == [1, 2]


def test_a_canary_of_a_stopped_app_or_one_that_never_gets_healthy_is_refused(
    controller: Controller,
) -> None:
    async def work() -> None:
        await controller.push(ECHO, None, 1, quiet)
        await controller.stop("echo")
        with pytest.raises(PlatformError, match="is stopped"):
            await controller.push(TWO, None, 1, quiet, canary=CanaryPolicy())
        await controller.start_app("echo", quiet)
        worker = dataclasses.replace(TWO, routes=())
        with pytest.raises(PlatformError, match="has no route: a canary divides requests"):
            await controller.push(worker, None, 1, quiet, canary=CanaryPolicy())
        target_of(controller).failing = "it crashed"
        with pytest.raises(DeployError):
            await controller.push(TWO, None, 1, quiet, canary=CanaryPolicy())
        with pytest.raises(NotFoundError, match="has no canary running"):
            await controller.canaries.abort("echo")

    asyncio.run(work())
    assert controller.state.app("echo").revision == 1
    assert last(controller, "deploy-failed")["reason"] == "it crashed"


# -- by hand ---------------------------------------------------------------------------------


def test_weight_then_promote_moves_every_request_to_the_new_revision(
    controller: Controller,
) -> None:
    target = target_of(controller)

    async def work() -> None:
        await with_canary(controller, CanaryPolicy(rollback=False))
        assert target.running["echo"][0].revision == 1  # the current one keeps running
        assert target.canaries["echo"][0].revision == 2
        assert target.canaries["echo"][1:] == (1, 10)  # the app's 2 instances, shared
        assert target.running["echo"][1] == 1
        assert views.describe(controller, "echo")["canary"]["weight"] == 10
        await controller.canaries.set_weight("echo", 50)
        assert target.canaries["echo"][2] == 50
        done = await controller.canaries.promote("echo")
        assert done.message == "revision 2 promoted: it takes every request"

    asyncio.run(work())
    assert target.running["echo"][0].revision == 2
    assert target.running["echo"][1] == 2  # the whole count, handed over
    assert "echo" not in target.canaries
    assert controller.state.app("echo").revision == 2
    assert last(controller, "canary-promoted") == {
        "revision": 2,
        "previous": 1,
        "reason": "by hand",
    }
    assert last(controller, "canary-weight")["weight"] == 50
    history = {r["number"]: r for r in views.revisions(controller, "echo")}
    assert history[2]["description"] == "push --canary 10"
    assert history[2]["canary"] == "promoted: by hand"
    assert history[2]["deployed"]
    assert views.describe(controller, "echo")["canary"] is None


def test_abort_leaves_the_current_revision_serving_alone(controller: Controller) -> None:
    target = target_of(controller)

    async def work() -> None:
        await with_canary(controller, CanaryPolicy(rollback=False))
        done = await controller.canaries.abort("echo")
        assert done.message == "canary revision 2 aborted: revision 1 takes every request"
        await controller.push(TWO, None, 2, quiet)  # an ordinary push is allowed again

    asyncio.run(work())
    assert last(controller, "canary-aborted") == {"revision": 2, "current": 1, "reason": "by hand"}
    assert {r["number"]: r["canary"] for r in views.revisions(controller, "echo")}[2] == (
        "aborted: by hand"
    )
    assert target.running["echo"][0].revision == 3


# -- automatic -------------------------------------------------------------------------------


def test_errors_in_the_new_revision_roll_it_back_in_the_window_they_appear(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)
    target.windows = [healthy(), {1: Measure(900, 9, 20.0), 2: Measure(100, 40, 20.0)}]

    async def work() -> None:
        await with_canary(controller, CanaryPolicy(window=10))
        await clock.advance(10)
        assert "echo" in target.canaries  # the first window was healthy
        await clock.advance(10)

    asyncio.run(work())
    assert "echo" not in target.canaries
    assert target.running["echo"][0].revision == 1
    assert controller.state.app("echo").revision == 1
    reason = last(controller, "canary-rolled-back")["reason"]
    assert reason == (
        "error rate 40.0% against 1.0% of the current revision (more than 5 points worse)"
    )


def test_a_slow_new_revision_is_rolled_back_on_its_p95(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)
    target.windows = [{1: Measure(900, 0, 20.0), 2: Measure(100, 0, 250.0)}]

    async def work() -> None:
        await with_canary(controller, CanaryPolicy(window=5, max_p95_ratio=3))
        await clock.advance(5)

    asyncio.run(work())
    reason = last(controller, "canary-rolled-back")["reason"]
    assert reason == (
        "p95 latency 250 ms against 20 ms of the current revision (more than 3 times)"
    )


def test_a_healthy_canary_is_promoted_once_its_period_has_passed(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)
    target.windows = [healthy(), healthy(), healthy(), healthy()]

    async def work() -> None:
        await with_canary(controller, CanaryPolicy(window=10, promote_after=30))
        await clock.advance(20)
        assert "echo" in target.canaries  # 20 s of 30
        await clock.advance(10)

    asyncio.run(work())
    assert controller.state.app("echo").revision == 2
    assert last(controller, "canary-promoted")["reason"] == (
        "healthy for 30 s (300 requests, 0 errors)"
    )


def test_windows_too_small_to_judge_join_the_next_until_they_can_be(
    controller: Controller, clock: FakeClock
) -> None:
    target = target_of(controller)
    few_but_failing = {1: Measure(50, 0, 20.0), 2: Measure(5, 5, 20.0)}
    target.windows = [few_but_failing] * 4

    async def work() -> None:
        policy = CanaryPolicy(window=10, promote_after=10, min_requests=20)
        await with_canary(controller, policy)
        await clock.advance(30)
        # Promotion is due, but nothing could be judged yet: 15 requests in three windows.
        assert "echo" in target.canaries
        await clock.advance(10)

    asyncio.run(work())
    assert "canary-promoted" not in kinds(controller)
    assert last(controller, "canary-rolled-back")["reason"] == (
        "error rate 100.0% against 0.0% of the current revision (more than 5 points worse)"
    )


def test_a_platform_restart_records_that_the_canary_ended(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        first = Controller(
            registry, ArtifactStore(tmp_path / "a"), tmp_path, target=ScriptedTarget()
        )

        async def before() -> None:
            await with_canary(first, CanaryPolicy(rollback=False))
            await first.close()

        asyncio.run(before())
        second = Controller(
            registry, ArtifactStore(tmp_path / "a"), tmp_path, target=ScriptedTarget()
        )
        asyncio.run(second.start())
        assert target_of(second).running["echo"][0].revision == 1
        assert last(second, "canary-aborted")["reason"] == (
            "the platform restarted; the current revision takes every request"
        )
        assert {r["number"]: r["canary"] for r in views.revisions(second, "echo")}[2] == (
            "aborted: the platform restarted; the current revision takes every request"
        )


# -- the rules and the split -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "judged"),
    [
        (Measure(900, 0, 20.0), Measure(100, 5, 20.0), None),  # 5 points worse: the limit
        (Measure(900, 0, 20.0), Measure(100, 6, 20.0), "error rate 6.0%"),
        (Measure(900, 90, 20.0), Measure(100, 12, 20.0), None),  # both bad: the app, not it
        (Measure(900, 0, 2.0), Measure(100, 0, 11.0), None),  # 5x, but only 9 ms slower
        (Measure(900, 0, 20.0), Measure(100, 0, 41.0), "p95 latency 41 ms"),
        (Measure(0, 0, 0.0), Measure(100, 0, 500.0), None),  # nothing to compare latency with
        (Measure(900, 0, 20.0), Measure(19, 19, 900.0), None),  # too few to judge
    ],
)
def test_the_rules_compare_the_new_revision_with_the_current_one(
    current: Measure, new: Measure, judged: str | None
) -> None:
    reason = verdict(CanaryPolicy(), current, new)
    assert (reason if reason is None else reason[: len(judged or "")]) == judged


@pytest.mark.parametrize(
    "bad",
    [
        {"weight": 0},
        {"weight": 100},
        {"promote_after": 0.0},
        {"window": -1.0},
        {"max_error_rate": 101.0},
        {"max_p95_ratio": 0.5},
        {"min_requests": 0},
    ],
)
def test_an_impossible_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="canary"):
        CanaryPolicy(**bad)  # type: ignore[arg-type]


def test_the_route_table_splits_by_weight_and_falls_back_to_the_revision_that_is_ready() -> None:
    table = RouteTable()
    for revision, index in ((1, 0), (1, 1), (2, 0)):
        table.set_backend(
            "iris",
            f"iris/{revision}/{index}",
            "127.0.0.1",
            8000 + 10 * revision + index,
            revision=revision,
        )
    split = Split(stable=1, canary=2, weight=10)
    table.set_split("iris", split)
    firsts = [table.pick("iris")[0] for _ in range(1000)]
    assert sum(1 for b in firsts if b.revision == 2) == 100
    assert {b.port for b in firsts if b.revision == 1} == {8010, 8011}  # round-robin within
    assert [b.revision for b in table.pick("iris")][1:] != []  # the others follow as fallbacks
    table.remove_backend("iris", "iris/2/0")
    assert {table.pick("iris")[0].revision for _ in range(100)} == {1}
    split.observe(1, 200, 5.0)
    split.observe(1, 502, 15.0)
    assert split.take() == {1: Measure(2, 1, 15.0)}
    assert split.take() == {}
    table.set_split("iris", None)
    assert table.split("iris") is None


# -- the manifest's canary block ---------------------------------------------------------------

APP = "applications:\n  - name: reports\n    command: serve\n"


def test_a_manifest_canary_block_becomes_the_apps_policy_and_survives_its_revision() -> None:
    text = APP + (
        "    canary: {weight: 25, promote-after: 5m, max-error-rate: 2.5, max-p95-ratio: 3,"
        " window: 500ms, min-requests: 50, rollback: false}\n"
    )
    spec = parse_manifest(text, "conveyor.yml").app("reports")
    assert spec.canary == CanaryPolicy(
        weight=25,
        promote_after=300.0,
        max_error_rate=2.5,
        max_p95_ratio=3.0,
        window=0.5,
        min_requests=50,
        rollback=False,
    )
    assert AppSpec.from_json("reports", spec.to_json()).canary == spec.canary
    defaults = parse_manifest(APP + "    canary: {}\n", "conveyor.yml").app("reports")
    assert defaults.canary == CanaryPolicy()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "{weight: 100}",
            "conveyor.yml:4:22: applications[0].canary.weight: expected a whole number "
            "from 1 to 99, got '100'",
        ),
        (
            "{promote-after: 5 parsecs}",
            "conveyor.yml:4:29: applications[0].canary.promote-after: expected a duration "
            "like 30s, 5m or 1h, got '5 parsecs'",
        ),
        (
            "{max-p95-ratio: 0.5}",
            "conveyor.yml:4:29: applications[0].canary.max-p95-ratio: expected a number "
            "from 1 to 1000, got '0.5'",
        ),
        (
            "{percent: 10}",
            "conveyor.yml:4:14: applications[0].canary.percent: unknown key; valid keys: "
            "weight, promote-after, max-error-rate, max-p95-ratio, window, min-requests, "
            "rollback",
        ),
    ],
)
def test_a_wrong_canary_block_names_file_line_column_and_field(block: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(APP + f"    canary: {block}\n", "conveyor.yml")
    assert str(caught.value) == message


def test_a_push_of_a_running_app_with_a_canary_block_starts_a_canary(
    controller: Controller,
) -> None:
    target = target_of(controller)
    policy = CanaryPolicy(weight=30, rollback=False)

    async def work() -> None:
        first = await controller.push(dataclasses.replace(ECHO, canary=policy), None, 1, quiet)
        assert first.message == "revision 1 is running"  # nothing to compare with yet
        second = await controller.push(dataclasses.replace(TWO, canary=policy), None, 1, quiet)
        assert second.message == ("canary revision 2 gets 30 % of requests, revision 1 the rest")

    asyncio.run(work())
    assert target.canaries["echo"][2] == 30
