"""Registered models on a Kubernetes target, part 2: apps follow their alias; a stream's score.

The platform runs with the fake API (kmock) and SeaweedFS as the target's
artifact root; the test plays the Deployment controller (it patches /status)
and the kubelet (:mod:`.kubelet`: a container's command run as a local
process, its variables resolved from the Deployment and the Secret). The
stream's score app runs over the machine's Redis as its binder.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import open_binder
from conveyor.streams.messages import Message, new_headers
from tests.platform.control import Platform, running_platform
from tests.s3_server import BUCKET, SeaweedFS
from tests.trained_models import TRAIN
from tests.waiting import eventually

from . import kubelet
from .fake_api import CONTEXT, NAMESPACE, FakeApi, fake_api

pytestmark = pytest.mark.slow

REDIS = "redis://127.0.0.1:6379/0"
IMAGE = "registry.example.com/ds/conveyor@sha256:" + "c0" * 32
ROW = {"sex": "m", "age": 41.0, "bp": 140.0}
FAILED = {
    "conditions": [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "dx-2" has timed out progressing.',
        }
    ]
}


@pytest.fixture(scope="module")
def registered(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: SeaweedFS
) -> Iterator[tuple[Platform, FakeApi, str, list[str]]]:
    """A platform, target ``prod`` with its artifact root in SeaweedFS, and model ``dx``
    registered from two recorded runs (versions 1 and 2; alias champion on 1). The run ids."""
    root = tmp_path_factory.mktemp("k8s-follow")
    with fake_api(root) as api, running_platform(root / "platform") as platform:
        prefix = kubelet.add_artifact_target(platform, api, seaweedfs)
        (platform.project / "train.py").write_text(TRAIN)
        runs = []
        for seed in ("1", "2"):  # two seeds, two different pipelines
            platform.cli("run", "--seed", seed, "--", "python", "train.py")
            run_id = json.loads(platform.cli("runs", "--json").stdout)[0]["id"]
            platform.cli("models", "register", f"run:{run_id}/pipeline", "--name", "dx")
            runs.append(run_id)
        platform.cli("models", "alias", "dx", "champion", "1")
        yield platform, api, prefix, runs


def _versions(platform: Platform) -> dict[int, str]:
    """Version -> blob digest of model ``dx``."""
    rows = json.loads(platform.cli("models", "versions", "dx", "--json").stdout)
    return {int(r["version"]): str(r["digest"]) for r in rows}


def _served(api: FakeApi) -> tuple[str, str, str]:
    """The Deployment's revision label, model version annotation and MODEL variable."""
    deployment = api.objects("Deployment")["dx"]
    notes = deployment["metadata"]["annotations"]
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    model = next(e["value"] for e in box["env"] if e["name"] == "MODEL")
    revision = deployment["metadata"]["labels"]["app.kubernetes.io/version"]
    return revision, notes["conveyor.dev/model-version"], model


def _events(api: FakeApi, reason: str) -> list[str]:
    return [
        str(e["message"])
        for e in api.objects("Event").values()
        if e.get("reason") == reason and e["involvedObject"]["name"] == "dx"
    ]


def test_an_app_following_its_alias_rolls_on_the_target_when_the_alias_moves(
    registered: tuple[Platform, FakeApi, str, list[str]], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    platform, api, prefix, _ = registered
    versions = _versions(platform)
    (platform.project / "conveyor.yml").write_text(
        "applications:\n  - name: dx\n    model: models:/dx@champion\n    follow-alias: true\n"
    )
    pushed = kubelet.push_target(platform, api, "dx")
    assert "dx: revision 1 rolled out on prod" in pushed.stdout
    marks = api.objects("Deployment")["dx"]["metadata"]
    assert marks["labels"]["conveyor.dev/follow-alias"] == "true"
    assert marks["annotations"]["conveyor.dev/follow-alias"] == "models:/dx@champion"
    assert _served(api) == ("1", "1", f"artifact:{versions[1]}/pipeline.skops")

    platform.cli("models", "alias", "dx", "champion", "2")
    moved = eventually(
        lambda: _events(api, "AliasMoved"), what="the roll onto version 2", timeout=90
    )
    assert moved == ["models:/dx@champion moved: version 1 -> 2 (revision 2)"]
    assert _served(api) == ("2", "2", f"artifact:{versions[2]}/pipeline.skops")
    notes = api.objects("Deployment")["dx"]["spec"]["template"]["metadata"]["annotations"]
    assert notes["conveyor.dev/model-digest"] == versions[2]
    client: Any = seaweedfs.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=kubelet.bucket_key(prefix) + "/")
    keys = {o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", ())}
    assert keys == {versions[1].partition(":")[2], versions[2].partition(":")[2]}

    # The pod of the new revision serves version 2, fetched from the bucket.
    rows = {k: [v] for k, v in ROW.items()}
    request = {
        "inputs": [
            {"name": "sex", "shape": [1], "datatype": "BYTES", "data": rows["sex"]},
            {"name": "age", "shape": [1], "datatype": "FP64", "data": rows["age"]},
            {"name": "bp", "shape": [1], "datatype": "FP64", "data": rows["bp"]},
        ]
    }
    import httpx

    with kubelet.pod(api, "dx", tmp_path / "pod", ready="/v2/health/ready") as base:
        answer = httpx.post(f"{base}/v2/models/dx/infer", json=request, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == "dx/2"
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    trust = kubelet.trusted(platform, "dx")
    assert outputs["label"] == kubelet.predicted(seaweedfs, prefix, versions[2], rows, trust)


def test_a_failed_rollout_after_the_alias_moves_keeps_the_version_served(
    registered: tuple[Platform, FakeApi, str, list[str]],
) -> None:
    platform, api, _, _ = registered
    versions = _versions(platform)
    assert _served(api)[:2] == ("2", "2")  # where the test above left it
    api.set_status("Deployment", "dx", FAILED)
    try:
        platform.cli("models", "alias", "dx", "champion", "1")
        failed = eventually(
            lambda: _events(api, "AliasMoveFailed"), what="the failed roll's event", timeout=90
        )
        assert failed[0].startswith("models:/dx@champion moved: version 2 -> 1: dx did not roll")
        assert "the previous revision keeps serving" in failed[0]
        # Put back: the Deployment is revision 2 again, serving version 2.
        assert _served(api) == ("2", "2", f"artifact:{versions[2]}/pipeline.skops")
    finally:
        platform.cli("models", "alias", "dx", "champion", "2")
        api.set_status("Deployment", "dx", {**kubelet.READY, "conditions": []})


def _applied(api: FakeApi, name: str) -> bool:
    return name in api.objects("Deployment")


def _play_stream_controller(api: FakeApi, names: list[str]) -> threading.Thread:
    """Mark each Deployment of the stream ready once it is applied (sinks come first)."""

    def controller() -> None:
        for name in names:
            applied = functools.partial(_applied, api, name)
            eventually(applied, what=f"{name} applied")
            api.set_status("Deployment", name, kubelet.READY)

    playing = threading.Thread(target=controller)
    playing.start()
    return playing


def test_a_stream_scores_a_registered_model_read_from_the_artifact_root(
    registered: tuple[Platform, FakeApi, str, list[str]], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    platform, api, prefix, runs = registered
    stream = f"sc{os.urandom(4).hex()}"
    model = f"run:{runs[0]}/pipeline"
    platform.cli("stream", "create", stream, "--definition", f"http | score --model={model} | log")
    playing = _play_stream_controller(api, [f"{stream}-log", f"{stream}-score", f"{stream}-http"])
    try:
        deployed = platform.cli(
            "stream", "deploy", stream, "--target", "prod", "--binder", REDIS, "--image", IMAGE,
            timeout=300,
        )  # fmt: skip
    finally:
        playing.join(60)
    assert f"stream {stream} deployed on prod" in deployed.stdout
    digest = _versions(platform)[1]  # version 1 is run 1's pipeline
    assert "already in" in deployed.stderr  # the first test put it there

    score = api.objects("Deployment")[f"{stream}-score"]
    assert score["metadata"]["annotations"]["conveyor.dev/model-digest"] == digest
    command, env = kubelet.container(api, f"{stream}-score", tmp_path / "pod", kubelet.free_port())
    assert command == ["python", "-m", "conveyor.streams.run"]
    assert env["CONVEYOR_ARTIFACT_ROOT"] == prefix
    launch = json.loads(env["CONVEYOR_STREAM_APP"])
    assert launch["options"]["model"] == f"artifact:{digest}/pipeline.skops"
    assert launch["options"]["model-run-id"] == runs[0]

    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "probe")})
    binder = open_binder(REDIS, settings)
    try:
        binder.provision(launch["input"], launch["group"])
        binder.provision(launch["output"], "probe")
        with kubelet.pod(api, f"{stream}-score", tmp_path / "pod", ready="/health"):
            binder.publish(launch["input"], [Message(dict(ROW), new_headers(stream, "http"))])
            consumer = binder.consumer(launch["output"], "probe", name="probe")
            try:
                received = eventually(
                    lambda: consumer.receive(10, 1.0), what="the scored message", timeout=60
                )
                consumer.ack(received)
            finally:
                consumer.close()
        (scored,) = received.messages
        rows = {k: [v] for k, v in ROW.items()}
        trust = kubelet.trusted(platform, "dx")
        expected = kubelet.predicted(seaweedfs, prefix, digest, rows, trust)
        assert {k: scored.payload[k] for k in ROW} == ROW
        assert scored.payload["prediction"] == expected[0]
        assert set(scored.payload["probabilities"]) == {"0", "1"}
        assert scored.headers["model-digest"] == digest
        assert scored.headers["model-run"] == runs[0]
        assert scored.headers["model-source"] == f"artifact:{digest}/pipeline.skops"
    finally:
        binder.delete(launch["input"], [launch["group"]])
        binder.delete(launch["output"], ["probe", stream])
        binder.close()
        platform.cli("stream", "undeploy", stream, "--target", "prod")


def test_a_stream_scoring_a_registered_model_needs_a_target_with_an_artifact_root(
    registered: tuple[Platform, FakeApi, str, list[str]],
) -> None:
    platform, api, _, _ = registered
    platform.cli(
        "target", "add", "rootless", "--kubernetes", "--context", CONTEXT,
        "--namespace", NAMESPACE, "--registry", "registry.example.com/ds",
        "--runtime-image", kubelet.RUNTIME, "--replace",
    )  # fmt: skip
    stream = f"sc{os.urandom(4).hex()}"
    platform.cli(
        "stream", "create", stream, "--definition",
        "http | score --model=models:/dx@champion | log",
    )  # fmt: skip
    before = len(api.requests())
    for args in (
        ("stream", "deploy", stream, "--target", "rootless", "--image", IMAGE),
        ("k8s", "render", "--target", "rootless", "--stream", stream),
    ):
        refused = platform.cli(*args, "--binder", REDIS, check=False)
        assert refused.returncode != 0
        assert f"app '{stream}-score' scores with 'models:/dx@champion'" in refused.stderr
        assert "has no artifact root" in refused.stderr
        assert "--artifact-root s3://" in refused.stderr
        assert "Traceback" not in refused.stderr
    # Nothing was applied (the follower's looks at prod are reads).
    assert [r for r in api.requests()[before:] if r.method != "GET"] == []
