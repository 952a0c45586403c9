"""Apps that follow a model alias roll onto the version it names when it moves (scripted target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import UsageError
from conveyor.platform.controller import Controller
from conveyor.platform.errors import ManifestError
from conveyor.platform.follow import AliasFollower
from conveyor.platform.manifest import load_manifest
from conveyor.platform.releases import check_push
from conveyor.platform.spec import AppSpec
from conveyor.repro.registered import move_alias, register_run_model
from conveyor.store.records import ModelRecord

from .test_controller import controller, recorded_model, run, target_of

__all__ = ["controller"]  # the fixture, shared with the controller's tests

SIG = {"inputs": [{"name": "x", "dtype": "float64", "shape": []}], "outputs": []}


def _version(controller: Controller, run_id: str, content: bytes) -> int:
    """A run's model with ``content``, registered as a version of ``dx``."""
    recorded_model(controller, run_id)
    blob = controller.dir / f"{run_id}.skops"
    blob.write_bytes(content)
    digest = controller.artifacts.put_file(blob)
    registry = controller.state.registry
    registry.add_model(ModelRecord(run_id, "model", "model.skops", "sklearn", digest, SIG))
    version, _ = register_run_model(registry, f"run:{run_id}/model", "dx")
    return version.version


def test_a_moved_alias_rolls_the_app_once_and_records_why(controller: Controller) -> None:
    registry = controller.state.registry
    first = _version(controller, "a" * 32, b"first")
    second = _version(controller, "b" * 32, b"second")
    move_alias(registry, "dx", "champion", first)
    spec = AppSpec(name="dx", model="models:/dx@champion", options={"follow_alias": True})
    still = AppSpec(name="pinned", model="models:/dx@champion")
    follower = AliasFollower(controller)

    async def work() -> None:
        await controller.push(spec, None, 1, lambda _m: None)
        await controller.push(still, None, 1, lambda _m: None)
        assert await follower.check() == []  # nothing moved
        move_alias(registry, "dx", "champion", second)
        assert await follower.check() == ["dx"]
        assert await follower.check() == []  # rolled once, not at every look

    run(work)
    release, _ = target_of(controller).running["dx"]
    assert "--model-version" in release.command
    assert release.command[release.command.index("--model-version") + 1] == str(second)
    revisions = controller.state.revisions("dx")
    assert revisions[-1].description == f"models:/dx@champion moved: version {first} -> {second}"
    moved = [e for e in controller.state.events("dx") if e.kind == "alias-moved"]
    assert [(e.details["from"], e.details["to"]) for e in moved] == [(first, second)]
    # An app that does not ask to follow keeps the version it was staged with.
    assert len(controller.state.revisions("pinned")) == 1


def test_a_version_that_fails_to_deploy_is_not_retried_until_the_alias_moves_again(
    controller: Controller,
) -> None:
    registry = controller.state.registry
    first = _version(controller, "a" * 32, b"first")
    second = _version(controller, "b" * 32, b"second")
    move_alias(registry, "dx", "champion", first)
    spec = AppSpec(name="dx", model="models:/dx@champion", options={"follow_alias": True})
    follower = AliasFollower(controller)

    async def work() -> None:
        await controller.push(spec, None, 1, lambda _m: None)
        move_alias(registry, "dx", "champion", second)
        target_of(controller).failing = "crashed"
        assert await follower.check() == []
        assert await follower.check() == []
        target_of(controller).failing = None
        move_alias(registry, "dx", "champion", first)
        assert await follower.check() == []  # back where it runs: nothing to do

    run(work)
    # One attempt at version 2 (a revision that never ran), not one per look.
    assert [r.description for r in controller.state.revisions("dx")][1:] == [
        f"models:/dx@champion moved: version {first} -> {second}"
    ]


def test_follow_alias_needs_a_models_alias_uri(tmp_path: Path, controller: Controller) -> None:
    manifest = tmp_path / "conveyor.yml"
    manifest.write_text(
        "applications:\n"
        "  - name: a\n    model: models:/dx/1\n    follow-alias: true\n"
        "  - name: b\n    model: models:/dx@champion\n    follow-alias: true\n"
    )
    with pytest.raises(ManifestError, match="only for 'model: models:/<name>@<alias>'") as caught:
        load_manifest(manifest)
    assert "conveyor.yml:4" in str(caught.value)
    manifest.write_text(
        "applications:\n  - name: b\n    model: models:/dx@champion\n    follow-alias: true\n"
    )
    (spec,) = load_manifest(manifest).applications
    assert spec.options == {"follow_alias": True}
    with pytest.raises(UsageError, match="follow-alias needs"):
        check_push(
            AppSpec(name="c", model="models:/dx/1", options={"follow_alias": True}),
            None,
            target=controller.target,
            state=controller.state,
            artifacts=controller.artifacts,
        )
