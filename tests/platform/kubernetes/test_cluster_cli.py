"""`push/apps/app/scale/logs/delete --target T` through a real platform to kmock (fake_api.py)."""

from __future__ import annotations

import json
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from conveyor import __version__
from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import skopeo
from tests.platform.control import Platform
from tests.waiting import eventually

from .conftest import READY, push_playing, registry_or_skip, registry_target, unreachable_target
from .fake_api import CONTEXT, NAMESPACE, FakeApi

pytestmark = pytest.mark.slow

IMAGE = "registry.example.com/ds/triage@sha256:" + "ef" * 32
ONE_READY = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}


def test_push_list_show_scale_logs_and_delete_on_a_target(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    pushed = push_playing(platform, api, "--image", f"triage={IMAGE}")
    assert "triage: revision 1 rolled out on prod with 2 replica(s)" in pushed.stdout
    applied = [r.data for r in api.requests() if r.method == "PATCH" and r.subresource is None]
    rendered = platform.cli("k8s", "render", "--target", "prod", "--image", f"triage={IMAGE}")
    assert list(yaml.safe_load_all(rendered.stdout)) == applied  # exactly what push applied
    assert "triage: applied Deployment triage" in pushed.stderr
    live = api.objects("Deployment")["triage"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert "triage" not in platform.cli("apps").stdout  # the local platform runs nothing

    assert "triage  2/2 ready  revision 1" in platform.cli("apps", "--target", "prod").stdout

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "triage-6b9-a", "labels": {"app.kubernetes.io/version": "1"}},
        "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 1}]},
    }
    api.create("Pod", pod)
    api.handler[f"get /api/v1/namespaces/{NAMESPACE}/pods/triage-6b9-a/log"] << b"listening\n"
    shown = platform.cli("app", "triage", "--target", "prod").stdout
    assert "triage on prod: 1/1 pods ready" in shown
    assert "triage-6b9-a  revision 1  Running  ready  restarts 1" in shown
    logs = platform.cli("logs", "triage", "--target", "prod").stdout
    assert "triage-6b9-a: listening" in logs
    # Followed: the fake's log ends after its line, so the command ends too.
    followed = platform.cli("logs", "triage", "-f", "--target", "prod", timeout=60)
    assert followed.stdout.splitlines() == ["triage-6b9-a: listening"]
    sent = [r for r in api.requests() if r.url.path.endswith("/triage-6b9-a/log")][-1]
    assert dict(sent.params) == {"tailLines": "100", "follow": "true"}

    scaled = platform.cli("scale", "triage", "-i", "3", "--target", "prod").stdout
    assert "triage: scaled to 3 replica(s) on prod" in scaled
    assert api.objects("Deployment")["triage"]["spec"]["replicas"] == 3

    again = push_playing(platform, api, "--image", f"triage={IMAGE}")
    assert "revision 2 rolled out" in again.stdout

    deleted = platform.cli("delete", "triage", "--target", "prod", "-y").stdout
    assert "triage: deleted from prod" in deleted
    assert api.objects("Deployment") == {}


def test_a_push_builds_the_image_into_the_targets_registry_then_applies_it(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    with registry_target(platform, tmp_path, "built") as registry:
        pushed = push_playing(platform, api, target="built", timeout=600)
        assert "triage: revision 1 rolled out on built" in pushed.stdout
        image = api.objects("Deployment")["triage"]["spec"]["template"]["spec"]["containers"][0]
        assert image["image"].startswith(f"{registry.host}/ds/triage@sha256:")
        # The image is really in the registry, labelled with the app and its revision.
        inspected = json.loads(
            skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{image['image']}")
        )
        assert inspected["Labels"]["app.kubernetes.io/name"] == "triage"
        platform.cli("delete", "triage", "--target", "built", "-y")


def test_a_registry_that_cannot_be_reached_fails_the_push_naming_it(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    closed = unreachable_target(platform, "unreachable")
    before = len(api.requests())
    result = platform.cli("push", "--target", "unreachable", check=False, timeout=300)
    assert result.returncode != 0
    assert f"cannot reach the image registry {closed}" in result.stderr
    assert "Traceback" not in result.stderr
    applied = [r for r in api.requests()[before:] if r.method == "PATCH"]
    assert applied == []  # nothing applied without an image


def test_an_unknown_target_or_context_is_a_clear_error(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, _ = cluster
    unknown = platform.cli("apps", "--target", "nowhere", check=False)
    assert unknown.returncode != 0
    assert "there is no target named 'nowhere'" in unknown.stderr
    platform.cli(
        "target", "add", "elsewhere", "--kubernetes", "--context", "no-such-context",
        "--namespace", NAMESPACE, "--registry", "registry.example.com/ds",
    )  # fmt: skip
    bad = platform.cli("apps", "--target", "elsewhere", check=False)
    assert bad.returncode != 0
    assert "cannot use context 'no-such-context' of the kubeconfig" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_stream_renders_and_deploys_as_one_deployment_per_app(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    platform.cli("stream", "create", "fraud", "--definition", "http | log")
    local_binder = platform.cli("stream", "deploy", "fraud", "--target", "prod", check=False)
    assert local_binder.returncode != 0
    assert "on a cluster the apps need a broker every pod reaches" in local_binder.stderr

    binder = "kafka://kafka.ds:9092"
    rendered = platform.cli(
        "k8s", "render", "--target", "prod", "--stream", "fraud", "--binder", binder
    ).stdout
    objects = list(yaml.safe_load_all(rendered))
    deployments = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    assert deployments == ["fraud-log", "fraud-http"]  # sinks first
    for o in objects:
        if o["kind"] == "Deployment":
            env = {e["name"]: e.get("value") for e in _containers(o)[0]["env"]}
            assert json.loads(env["CONVEYOR_STREAM_APP"])["binder"] == binder

    def controller() -> None:
        for app in deployments:
            eventually(partial(_has, api, app), what=f"{app} applied")
            api.set_status("Deployment", app, READY)

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        deployed = platform.cli(
            "stream", "deploy", "fraud", "--target", "prod", "--binder", binder,
            "--image", f"registry.example.com/ds/conveyor@sha256:{'a1' * 32}",
        )  # fmt: skip
    finally:
        playing.join(60)
    assert "stream fraud deployed on prod: fraud-log, fraud-http" in deployed.stdout
    assert {"fraud-log", "fraud-http"} <= set(api.objects("Deployment"))

    info = platform.cli("stream", "info", "fraud", "--target", "prod").stdout
    assert "fraud on prod: 2 app(s)" in info
    assert re.search(r"fraud-log\s+2/1 ready\s+revision 1", info), info
    undeployed = platform.cli("stream", "undeploy", "fraud", "--target", "prod").stdout
    assert "stream fraud undeployed from prod: fraud-log, fraud-http" in undeployed
    assert not {"fraud-log", "fraud-http"} & set(api.objects("Deployment"))
    gone = platform.cli("stream", "info", "fraud", "--target", "prod", check=False)
    assert gone.returncode != 0
    assert "stream 'fraud' is not deployed on target 'prod'" in gone.stderr


def test_a_model_app_whose_runtime_image_cannot_be_built_fails_naming_the_registry(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    closed = unreachable_target(platform, "noruntime")
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "conveyor.yml").write_text(
        "applications:\n  - name: diagnosis\n    model: model.json\n"
    )
    before = len(api.requests())
    refused = platform.cli("push", "--target", "noruntime", cwd=tmp_path, check=False, timeout=300)
    assert refused.returncode != 0
    assert f"cannot reach the image registry {closed}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert [r for r in api.requests()[before:] if r.method == "PATCH"] == []


def _has(api: FakeApi, deployment: str) -> bool:
    return deployment in api.objects("Deployment")


def _push_model(
    platform: Platform, api: FakeApi, folder: Path, name: str, target: str
) -> dict[str, Any]:
    """Push a model app ``name`` (a model file among its files) to ``target`` while the test
    plays the Deployment controller; its Deployment's container."""
    folder.mkdir()
    (folder / "model.json").write_text("{}")
    (folder / "conveyor.yml").write_text(
        f"applications:\n  - name: {name}\n    model: model.json\n"
    )

    def controller() -> None:
        eventually(partial(_has, api, name), what="the Deployment applied", timeout=600)
        api.set_status("Deployment", name, ONE_READY)

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        pushed = platform.cli("push", "--target", target, cwd=folder, timeout=600)
    finally:
        playing.join(600)
    assert f"{name}: revision 1 rolled out on {target}" in pushed.stdout
    return _containers(api.objects("Deployment")[name])[0]


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers


def test_a_model_app_is_built_on_the_targets_runtime_image(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    registry = registry_or_skip(tmp_path / "registry")
    try:
        # The tests' runtime image is the tiny base (no Conveyor inside: nothing runs it here).
        push_tiny_base(registry.host, "base/runtime", "1", tmp_path / "base")
        runtime = f"{registry.host}/base/runtime:1"
        platform.cli(
            "target", "add", "models", "--kubernetes", "--context", CONTEXT,
            "--namespace", NAMESPACE, "--registry", f"{registry.host}/ds",
            "--runtime-image", runtime,
        )  # fmt: skip
        box = _push_model(platform, api, tmp_path / "app", "scorer", "models")
        assert box["image"].startswith(f"{registry.host}/ds/scorer@sha256:")
        assert "conveyor serve" in box["command"][-1]
        inspected = json.loads(
            skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{box['image']}")
        )
        assert inspected["Labels"]["org.opencontainers.image.base.name"] == runtime
        assert inspected["Labels"]["dev.conveyor.kind"] == "model"
        platform.cli("delete", "scorer", "--target", "models", "-y")
    finally:
        registry.stop()


def test_without_a_runtime_image_the_target_builds_one_for_stream_and_model_apps(
    cluster: tuple[Platform, FakeApi], tmp_path: Path
) -> None:
    platform, api = cluster
    with registry_target(platform, tmp_path, "own") as registry:
        platform.cli("stream", "create", "alerts", "--definition", "http | log")

        def streams() -> None:
            for app in ("alerts-log", "alerts-http"):
                eventually(partial(_has, api, app), what=f"{app} applied", timeout=600)
                api.set_status("Deployment", app, ONE_READY)

        playing = threading.Thread(target=streams)
        playing.start()
        try:
            deployed = platform.cli(
                "stream", "deploy", "alerts", "--target", "own",
                "--binder", "kafka://kafka.ds:9092", timeout=600,
            )  # fmt: skip
        finally:
            playing.join(600)
        assert "stream alerts deployed on own: alerts-log, alerts-http" in deployed.stdout
        runtime = f"{registry.host}/ds/conveyor-runtime@sha256:"
        images = {
            _containers(api.objects("Deployment")[a])[0]["image"]
            for a in ("alerts-log", "alerts-http")
        }
        assert len(images) == 1
        pinned = images.pop()
        assert pinned.startswith(runtime)
        inspected = json.loads(
            skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{pinned}")
        )
        assert inspected["Labels"]["conveyor.version"] == __version__
        assert inspected["Labels"]["org.opencontainers.image.base.name"] == (
            f"{registry.host}/base/own:1"
        )

        box = _push_model(platform, api, tmp_path / "app", "grader", "own")
        assert box["image"].startswith(f"{registry.host}/ds/grader@sha256:")
        built = json.loads(
            skopeo("inspect", "--tls-verify=false", "--no-tags", f"docker://{box['image']}")
        )
        # Built on the runtime image the stream used: its layers first, its labels kept.
        assert built["Labels"]["org.opencontainers.image.base.name"] == pinned
        assert built["Layers"][: len(inspected["Layers"])] == inspected["Layers"]
        assert built["Labels"]["conveyor.version"] == __version__
        platform.cli("delete", "grader", "--target", "own", "-y")
        platform.cli("stream", "undeploy", "alerts", "--target", "own")
