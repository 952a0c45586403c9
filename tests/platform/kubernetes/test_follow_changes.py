"""The cluster follower after changes to the app: a set-env or unset-env is kept by the next
alias roll, a rollback onto an older version is rolled forward keeping its variables (as
locally), and a roll waits for a change in progress and renders from what it made.

In process, against the fake API (kmock) with a folder standing for the target's
artifact root; the test plays the Deployment controller (its status, its ReplicaSets).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conveyor.platform.controller import Controller
from conveyor.platform.kubernetes.follow import ClusterAliasFollower
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec
from conveyor.repro.registered import move_alias
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.targets import TargetRepository

from ..test_alias_following import _version
from ..test_controller import controller
from .fake_api import FakeApi, fake_api
from .kubelet import push_following

__all__ = ["controller"]  # the fixture, shared with the controller's tests

IMAGE = "registry.example.com/ds/conveyor-runtime@sha256:" + "ab" * 32


def _live(api: FakeApi) -> dict[str, Any]:
    return api.objects("Deployment")["dx"]


def _env(api: FakeApi) -> dict[str, str | None]:
    box = _live(api)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in box["env"]}


def _served(api: FakeApi) -> tuple[str, str]:
    """The revision the Deployment runs and the model version it says it serves."""
    meta = _live(api)["metadata"]
    return meta["labels"]["app.kubernetes.io/version"], meta["annotations"][
        "conveyor.dev/model-version"
    ]


def _keep(api: FakeApi) -> None:
    """What the Deployment controller keeps of the running pod template: a ReplicaSet."""
    template = copy.deepcopy(_live(api)["spec"]["template"])
    number = template["metadata"]["labels"]["app.kubernetes.io/version"]
    template["metadata"]["labels"]["pod-template-hash"] = f"h{number}"
    api.create(
        "ReplicaSet",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"dx-h{number}",
                "labels": template["metadata"]["labels"],
                "annotations": {"deployment.kubernetes.io/revision": number},
                "ownerReferences": [{"kind": "Deployment", "name": "dx", "uid": "u1"}],
            },
            "spec": {"replicas": 0, "template": template},
        },
    )


def _following(
    controller: Controller,
    tmp_path: Path,
    test: Callable[[FakeApi, KubernetesTarget, ClusterAliasFollower, list[int]], Awaitable[None]],
    *,
    lock: Callable[[str, str], asyncio.Lock] | None = None,
) -> None:
    """Model ``dx`` with versions 1-3 (alias champion on the first), app ``dx`` following it
    pushed to target ``prod`` as revision 1, its replicas ready; then ``test``."""
    registry = controller.state.registry
    versions = [_version(controller, c * 32, c.encode()) for c in ("a", "b", "c")]
    move_alias(registry, "dx", "champion", versions[0])
    root = ArtifactStore(tmp_path / "root")
    with fake_api(tmp_path) as api:
        config = api.config()
        TargetRepository(registry).add("prod", "kubernetes", config.to_json(), replace=False)
        target = KubernetesTarget(config, builder=None, cluster=api.cluster(), poll=0.05)
        follower = ClusterAliasFollower(
            registry,
            controller.artifacts,
            lambda _c: root,
            dict,
            connect=lambda _c: target,
            lock=lock,
        )
        spec = AppSpec(
            name="dx",
            model="models:/dx@champion",
            env={"TEAM": "ds"},
            options={"follow_alias": True},
        )

        async def work() -> None:
            await push_following(api, target, spec, registry, controller.artifacts, root, IMAGE)
            _keep(api)
            await test(api, target, follower, versions)

        asyncio.run(work())


def test_set_env_and_unset_env_outlive_the_next_alias_roll(
    controller: Controller, tmp_path: Path
) -> None:
    registry = controller.state.registry

    async def test(
        api: FakeApi, target: KubernetesTarget, follower: ClusterAliasFollower, versions: list[int]
    ) -> None:
        await target.set_env("dx", {"LEVEL": "debug"}, [], print)
        assert await follower.check() == []  # the alias has not moved
        move_alias(registry, "dx", "champion", versions[1])
        assert await follower.check() == ["prod/dx"]
        assert _served(api) == ("3", str(versions[1]))
        assert {"TEAM": "ds", "LEVEL": "debug"}.items() <= _env(api).items()

        await target.set_env("dx", {}, ["TEAM"], print)
        move_alias(registry, "dx", "champion", versions[2])
        assert await follower.check() == ["prod/dx"]
        assert _served(api) == ("5", str(versions[2]))
        assert "TEAM" not in _env(api)
        assert _env(api)["LEVEL"] == "debug"

    _following(controller, tmp_path, test)


def test_a_rollback_onto_an_older_version_is_rolled_forward_with_its_variables(
    controller: Controller, tmp_path: Path
) -> None:
    registry = controller.state.registry

    async def test(
        api: FakeApi, target: KubernetesTarget, follower: ClusterAliasFollower, versions: list[int]
    ) -> None:
        await target.set_env("dx", {"LEVEL": "debug"}, [], print)  # revision 2, version 1
        _keep(api)
        move_alias(registry, "dx", "champion", versions[1])
        assert await follower.check() == ["prod/dx"]  # revision 3, version 2
        _keep(api)
        await target.set_env("dx", {"LEVEL": "quiet"}, [], print)  # revision 4, version 2
        _keep(api)

        # Back to revision 2: its variables and version 1, which the alias no longer names.
        assert await target.rollback("dx", 2, print) == (5, 2)
        assert _served(api) == ("5", str(versions[0]))
        assert _env(api)["LEVEL"] == "debug"
        assert await follower.check() == ["prod/dx"]  # as locally: onto the alias's version
        assert _served(api) == ("6", str(versions[1]))
        assert _env(api)["LEVEL"] == "debug"
        moved = [e["message"] for e in api.objects("Event").values() if e["reason"] == "AliasMoved"]
        assert (
            f"models:/dx@champion moved: version {versions[0]} -> {versions[1]} (revision 6)"
            in moved
        )

        # A rollback that keeps the version (it undoes a set-env) stays as it is.
        _keep(api)
        assert await target.rollback("dx", 4, print) == (7, 4)
        assert _env(api)["LEVEL"] == "quiet"
        assert await follower.check() == []
        move_alias(registry, "dx", "champion", versions[2])
        assert await follower.check() == ["prod/dx"]
        assert _served(api) == ("8", str(versions[2]))
        assert _env(api)["LEVEL"] == "quiet"

    _following(controller, tmp_path, test)


def test_a_roll_waits_for_the_change_in_progress_and_keeps_what_it_made(
    controller: Controller, tmp_path: Path
) -> None:
    registry = controller.state.registry
    lock, waiting = asyncio.Lock(), asyncio.Event()
    asked: list[tuple[str, str]] = []

    def locks(target: str, app: str) -> asyncio.Lock:
        asked.append((target, app))
        waiting.set()
        return lock

    async def test(
        api: FakeApi, target: KubernetesTarget, follower: ClusterAliasFollower, versions: list[int]
    ) -> None:
        async with lock:  # a change of the app in progress (as the control API holds it)
            move_alias(registry, "dx", "champion", versions[1])
            rolling = asyncio.ensure_future(follower.check())
            # The follower sees the move and waits for the change to end.
            asking = asyncio.ensure_future(waiting.wait())
            await asyncio.wait({rolling, asking}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert asking.done(), "the follower did not ask for the app's lock"
            assert not rolling.done()
            await target.set_env("dx", {"LEVEL": "debug"}, [], print)
        assert await rolling == ["prod/dx"]
        assert asked == [("prod", "dx")]
        assert _served(api) == ("3", str(versions[1]))  # after the set-env's revision 2
        assert _env(api)["LEVEL"] == "debug"

    _following(controller, tmp_path, test, lock=locks)
