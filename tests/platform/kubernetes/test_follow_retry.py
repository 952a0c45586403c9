"""The cluster follower, driven look by look: a version whose rollout failed waits for the alias.

In process, against the fake API (kmock) with a folder standing for the target's
artifact root; the test plays the Deployment controller by patching /status.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from conveyor.platform.controller import Controller
from conveyor.platform.kubernetes.follow import ClusterAliasFollower
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec
from conveyor.repro.registered import move_alias
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.targets import TargetRepository

from ..test_alias_following import _version
from ..test_controller import controller
from .fake_api import fake_api
from .kubelet import READY, push_following

__all__ = ["controller"]  # the fixture, shared with the controller's tests

IMAGE = "registry.example.com/ds/conveyor-runtime@sha256:" + "ab" * 32
FAILED = {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}


def test_a_version_that_failed_to_roll_out_waits_until_the_alias_moves_again(
    controller: Controller, tmp_path: Path
) -> None:
    registry = controller.state.registry
    first, second, third = (_version(controller, c * 32, c.encode()) for c in ("a", "b", "c"))
    move_alias(registry, "dx", "champion", first)
    root = ArtifactStore(tmp_path / "root")
    with fake_api(tmp_path) as api:
        config = api.config()
        TargetRepository(registry).add("prod", "kubernetes", config.to_json(), replace=False)
        target = KubernetesTarget(config, builder=None, cluster=api.cluster(), poll=0.05)
        follower = ClusterAliasFollower(
            registry, controller.artifacts, lambda _c: root, dict, connect=lambda _c: target
        )
        spec = AppSpec(name="dx", model="models:/dx@champion", options={"follow_alias": True})

        def deployment_patches() -> int:
            return sum(
                1
                for r in api.requests()
                if r.method == "PATCH" and r.subresource is None and "deployments/dx" in str(r.url)
            )

        async def work() -> None:
            await push_following(api, target, spec, registry, controller.artifacts, root, IMAGE)
            assert await follower.check() == []  # nothing moved

            api.set_status("Deployment", "dx", FAILED)
            move_alias(registry, "dx", "champion", second)
            assert await follower.check() == []  # tried, failed, put back
            tried = deployment_patches()
            assert await follower.check() == []
            assert deployment_patches() == tried  # not tried again at the next look

            api.set_status("Deployment", "dx", {**READY, "conditions": []})
            move_alias(registry, "dx", "champion", third)
            assert await follower.check() == ["prod/dx"]

        asyncio.run(work())
        notes = api.objects("Deployment")["dx"]["metadata"]["annotations"]
        assert notes["conveyor.dev/model-version"] == str(third)
        reasons = sorted((e["reason"], e["type"]) for e in api.objects("Event").values())
        assert reasons == [("AliasMoveFailed", "Warning"), ("AliasMoved", "Normal")]
