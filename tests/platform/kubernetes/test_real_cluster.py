"""The Kubernetes target against a real cluster: runs only when KUBECONFIG points at one.

No API server can run on the machine the suite is developed on, so this is
the one suite that ``CONVEYOR_REQUIRE_SERVICES=1`` does not require: without
a cluster it is skipped, saying why. To run it (kind, k3s, minikube or a cloud
cluster whose nodes can pull the image)::

    export KUBECONFIG=~/.kube/config          # its current context is used
    export CONVEYOR_TEST_IMAGE=python:3.12-slim   # any image with python on PATH
    .venv/bin/pytest tests/platform/kubernetes/test_real_cluster.py -m cluster

It makes a namespace of its own (``conveyor-test-<random>``) and deletes it
after. Here the server's own behaviour is what is checked: server-side apply
records the ``conveyor`` field manager, the Deployment controller rolls out,
a revision that never gets ready is put back, a Job runs to its end, and
set-env, restart and a rollback roll out, the rollback reading the
controller's ReplicaSets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.errors import DeployError
from conveyor.platform.kubernetes.client import Cluster
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec, HealthCheckSpec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

IMAGE = os.environ.get("CONVEYOR_TEST_IMAGE", "python:3.12-slim")


@pytest.fixture(scope="module")
def target() -> Iterator[KubernetesTarget]:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig.split(os.pathsep)[0]).exists():
        pytest.skip(
            "no Kubernetes cluster: KUBECONFIG does not point at a kubeconfig "
            "(the real-cluster suite is the one CONVEYOR_REQUIRE_SERVICES does not require)"
        )
    from kubernetes import client as kube

    namespace = f"conveyor-test-{secrets.token_hex(4)}"
    config = KubernetesConfig(context=None, namespace=namespace, registry="unused.example/ds")
    cluster = Cluster.connect(config)
    try:
        kube.VersionApi(cluster.api).get_code(_request_timeout=10)
    except Exception as exc:  # a kubeconfig left from a cluster that is gone
        pytest.skip(f"the cluster of KUBECONFIG does not answer: {str(exc)[:200]}")
    core = kube.CoreV1Api(cluster.api)
    core.create_namespace(kube.V1Namespace(metadata=kube.V1ObjectMeta(name=namespace)))
    try:
        yield KubernetesTarget(config, builder=None, cluster=cluster, poll=1.0)
    finally:
        core.delete_namespace(namespace)


def _server(name: str, *, command: str = "exec python -m http.server 8080") -> AppSpec:
    return AppSpec(
        name=name,
        command=command,
        instances=2,
        memory=128 * 1024 * 1024,
        routes=(),
        health_check=HealthCheckSpec(type="http", endpoint="/", timeout=60),
    )


def _push(target: KubernetesTarget, spec: AppSpec, revision: int, image: str) -> list[str]:
    lines: list[str] = []
    asyncio.run(
        target.push(spec, revision=revision, droplet={}, progress=lines.append, image=image)
    )
    return lines


def test_a_push_rolls_out_and_the_server_records_conveyor_as_field_manager(
    target: KubernetesTarget,
) -> None:
    lines = _push(target, _server("hello"), 1, IMAGE)
    assert any(line.startswith("rolled out") for line in lines)
    live: dict[str, Any] = target.cluster.get("Deployment", "hello") or {}
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert "conveyor" in managers
    assert live["status"]["availableReplicas"] == 2
    asyncio.run(target.scale("hello", 1))
    assert [a["instances"] for a in target.apps() if a["name"] == "hello"] == [1]


def test_a_revision_that_never_gets_ready_is_put_back(target: KubernetesTarget) -> None:
    _push(target, _server("steady"), 1, IMAGE)
    broken = _server("steady", command="exit 3")
    with pytest.raises(DeployError, match="the previous revision keeps serving"):
        _push(target, broken, 2, IMAGE)
    live = target.cluster.get("Deployment", "steady") or {}
    assert live["metadata"]["labels"]["app.kubernetes.io/version"] == "1"


def test_a_step_runs_as_a_job_and_its_output_comes_back(target: KubernetesTarget) -> None:
    step = AppSpec(name="step", command="echo trained", routes=())
    result = asyncio.run(
        target.launch(
            step,
            name="nightly-step-0001",
            revision=1,
            droplet={},
            command=None,
            progress=print,
            timeout=300,
            image=IMAGE,
        )
    )
    assert result.exit_code == 0
    assert "trained" in result.lines


def test_set_env_restart_and_rollback_roll_out_and_the_replicasets_are_the_history(
    target: KubernetesTarget,
) -> None:
    _push(target, _server("config"), 1, IMAGE)
    lines: list[str] = []
    assert asyncio.run(target.set_env("config", {"LEVEL": "debug"}, [], lines.append)) == 2
    assert asyncio.run(target.restart("config", lines.append)) == 2
    kept = target.revisions("config")
    assert set(kept) == {1, 2}  # the restart's ReplicaSet is revision 2's too
    revision, ran = asyncio.run(target.rollback("config", None, lines.append))
    assert (revision, ran) == (3, 1)
    live = target.cluster.get("Deployment", "config") or {}
    env = {e["name"] for e in live["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "LEVEL" not in env
    assert live["metadata"]["labels"]["app.kubernetes.io/version"] == "3"
    assert live["status"]["availableReplicas"] == 2
    reasons = {e["reason"] for e in target.events("config")}
    assert "ScalingReplicaSet" in reasons  # the controller's, on the Deployment
