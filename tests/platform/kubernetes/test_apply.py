"""The Kubernetes target against kmock, an HTTP fake of the API server (see fake_api.py).

What these tests show: the requests Conveyor sends (method, path, server-side
apply's content type, field manager and force), how it reads rollouts and Job
outcomes that the test plays by patching ``/status``, how it puts a revision
back when one fails, and how refusals read. What they cannot show: the real
server's apply semantics, dry-run or its controllers (see test_real_cluster.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.errors import ClusterError, DeployError
from conveyor.platform.kubernetes.client import APPLY_TYPE, Cluster
from conveyor.platform.kubernetes.deploy import rollout_state
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec
from tests.waiting import eventually

from .fake_api import NAMESPACE, FakeApi, fake_api

DIGEST = "sha256:" + "12" * 32
READY = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApi]:
    with fake_api(tmp_path) as running:
        yield running


class Builder:
    """A fixed image builder: what a droplet becomes, and what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Mapping[str, Any], Mapping[str, str]]] = []

    def __call__(self, droplet: Mapping[str, Any], labels: Mapping[str, str]) -> str:
        self.calls.append((droplet, labels))
        return f"registry.example.com/ds/triage@{DIGEST[:-2]}{len(self.calls):02d}"


def _spec(**changes: Any) -> AppSpec:
    base: dict[str, Any] = {
        "name": "triage",
        "command": "python app.py",
        "instances": 2,
        "routes": (RouteSpec(host="triage.example.com"),),
        "health_check": HealthCheckSpec(type="http", endpoint="/health", timeout=5),
    }
    base.update(changes)
    return AppSpec(**base)


def _push(
    api: FakeApi, target: KubernetesTarget, spec: AppSpec, revision: int, play: Any
) -> tuple[list[str], BaseException | None]:
    """Push while ``play`` (the test's controller) answers; the progress lines and the error."""
    lines: list[str] = []

    async def main() -> BaseException | None:
        push = asyncio.ensure_future(
            target.push(spec, revision=revision, droplet={"lock": "d"}, progress=lines.append)
        )
        await asyncio.to_thread(play)
        try:
            await asyncio.wait_for(push, 60)
        except (DeployError, ClusterError) as exc:
            return exc
        return None

    return lines, asyncio.run(main())


def test_apply_is_a_server_side_apply_with_conveyors_field_manager(api: FakeApi) -> None:
    cluster = api.cluster()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "triage-services", "namespace": NAMESPACE},
        "data": {},
    }
    cluster.apply(secret)
    sent = [r for r in api.requests() if r.method == "PATCH"][-1]
    assert sent.url.path == f"/api/v1/namespaces/{NAMESPACE}/secrets/triage-services"
    assert sent.headers["Content-Type"] == APPLY_TYPE
    assert dict(sent.params) == {"fieldManager": "conveyor", "force": "true"}
    assert sent.headers["Authorization"] == "Bearer test-token"
    assert sent.data == secret
    assert "triage-services" in api.objects("Secret")


def test_a_push_applies_everything_and_waits_for_the_rollout(api: FakeApi) -> None:
    builder = Builder()
    target = KubernetesTarget(api.config(), builder=builder, cluster=api.cluster(), poll=0.05)

    def controller() -> None:
        eventually(lambda: "triage" in api.objects("Ingress"), what="the Ingress applied")
        api.set_status("Deployment", "triage", {**READY, "updatedReplicas": 1})
        api.set_status("Deployment", "triage", READY)

    lines, error = _push(api, target, _spec(), 1, controller)
    assert error is None, error
    patched = [(r.url.path.split("/")[-2], r.name) for r in api.requests() if r.method == "PATCH"]
    kinds = [kind for kind, _ in patched if kind != "triage"]
    assert kinds[:4] == ["deployments", "poddisruptionbudgets", "services", "ingresses"]
    assert lines[0] == "building the image"
    assert "rolled out: 2 replicas available" in lines
    droplet, labels = builder.calls[0]
    assert droplet == {"lock": "d"}
    assert labels["dev.conveyor.revision"] == "1"
    live = api.objects("Deployment")["triage"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"].endswith("01")


def test_a_rollout_that_fails_puts_the_previous_revision_back(api: FakeApi) -> None:
    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster(), poll=0.05)
    _, error = _push(
        api,
        target,
        _spec(),
        1,
        lambda: _becomes_ready(api),
    )
    assert error is None
    first = api.objects("Deployment")["triage"]["spec"]["template"]["spec"]["containers"][0]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "triage-5f7c-x2", "labels": {"app.kubernetes.io/name": "triage"}},
    }
    api.create("Pod", pod)
    api.create(
        "Event",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "triage-5f7c-x2.1"},
            "involvedObject": {"kind": "Pod", "name": "triage-5f7c-x2"},
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container app",
        },
    )
    api.handler[f"get /api/v1/namespaces/{NAMESPACE}/pods/triage-5f7c-x2/log"] << (
        b"Traceback (most recent call last):\nModuleNotFoundError: No module named 'flask'\n"
    )
    # The new revision never gets ready: the controller says its deadline passed.
    api.set_status("Deployment", "triage", {"updatedReplicas": 0})

    def stuck() -> None:
        eventually(lambda: _image(api).endswith("02"), what="revision 2 applied")
        condition = {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "triage-5f7c" has timed out progressing.',
        }
        api.set_status("Deployment", "triage", {"conditions": [condition]})

    lines, error = _push(api, target, _spec(memory=64 * 1024 * 1024), 2, stuck)
    assert isinstance(error, DeployError)
    assert "triage did not roll out" in error.message
    assert "timed out progressing" in error.message
    assert "the previous revision keeps serving" in error.message
    assert "Back-off restarting failed container app" in (error.hint or "")
    assert "triage-5f7c-x2: ModuleNotFoundError: No module named 'flask'" in error.lines
    assert "restored Deployment triage" in lines
    again = api.objects("Deployment")["triage"]["spec"]["template"]["spec"]["containers"][0]
    assert again["image"] == first["image"]
    assert "resources" not in again  # revision 1 asked for no memory limit


def _becomes_ready(api: FakeApi) -> None:
    """The Deployment controller, played: every replica of the new revision is available."""
    eventually(lambda: "triage" in api.objects("Ingress"), what="the Ingress applied")
    api.set_status("Deployment", "triage", READY)


def _image(api: FakeApi) -> str:
    deployment = api.objects("Deployment").get("triage")
    if deployment is None:
        return ""
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_first_push_that_fails_leaves_nothing_behind(api: FakeApi) -> None:
    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster(), poll=0.05)

    def fails() -> None:
        eventually(lambda: "triage" in api.objects("Ingress"), what="the Ingress applied")
        condition = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "x"}
        api.set_status("Deployment", "triage", {"conditions": [condition]})

    lines, error = _push(api, target, _spec(), 1, fails)
    assert isinstance(error, DeployError)
    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        assert "triage" not in api.objects(kind), kind
    assert "deleted the new Deployment triage" in lines


def test_what_the_cluster_cannot_express_is_refused_before_anything_is_built(
    api: FakeApi,
) -> None:
    builder = Builder()
    target = KubernetesTarget(api.config(), builder=builder, cluster=api.cluster())
    spec = _spec(routes=(RouteSpec(path="/triage", strip_prefix=True),))
    with pytest.raises(Exception, match="strips its prefix"):
        asyncio.run(target.push(spec, revision=1, droplet={}, progress=print))
    assert builder.calls == []
    assert not any(r.method == "PATCH" for r in api.requests())


def test_a_forbidden_action_names_the_verb_the_resource_and_a_role(api: FakeApi) -> None:
    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'deployments.apps "triage" is forbidden: User "ci" cannot patch resource',
    }
    (
        api.handler[f"patch /apis/apps/v1/namespaces/{NAMESPACE}/deployments/triage"]
        << 403
        << (forbidden)
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "triage", "namespace": NAMESPACE},
    }
    with pytest.raises(ClusterError) as caught:
        api.cluster().apply(deployment)
    error = caught.value
    assert "refused to apply deployments in namespace 'ds-team'" in error.message
    assert "context kmock" in error.message
    assert "cannot patch resource" in error.message
    assert "kind: Role" in (error.hint or "")
    assert "apiGroups: [apps], resources: [deployments]" in (error.hint or "")


def test_scale_stop_and_inspect_an_app(api: FakeApi) -> None:
    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster(), poll=0.05)
    _push(
        api,
        target,
        _spec(),
        3,
        lambda: _becomes_ready(api),
    )
    assert target.apps() == [{"name": "triage", "revision": 3, "instances": 2, "ready": 2}]
    asyncio.run(target.scale("triage", 5))
    sent = [r for r in api.requests() if r.method == "PATCH"][-1]
    assert sent.headers["Content-Type"] == "application/merge-patch+json"
    assert sent.data == {"spec": {"replicas": 5}}
    assert api.objects("Deployment")["triage"]["spec"]["replicas"] == 5
    gone = asyncio.run(target.undeploy("triage"))
    assert set(gone) == {"Deployment", "Service", "Ingress", "PodDisruptionBudget"}
    assert api.objects("Deployment") == {}
    with pytest.raises(Exception, match="there is no app 'triage' in namespace 'ds-team'"):
        asyncio.run(target.scale("triage", 1))


@pytest.mark.parametrize(("status", "code"), [({"succeeded": 1}, 0), ({"failed": 1}, 1)])
def test_a_task_step_runs_as_a_job_to_its_end(
    api: FakeApi, status: dict[str, int], code: int
) -> None:
    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster(), poll=0.05)
    step = AppSpec(name="train", command="python train.py", routes=())

    async def main() -> Any:
        launch = asyncio.ensure_future(
            target.launch(
                step,
                name="nightly-train-9e8d7c6b",
                revision=1,
                droplet={},
                command=None,
                progress=print,
                timeout=60,
            )
        )
        await asyncio.to_thread(
            lambda: eventually(lambda: "nightly-train-9e8d7c6b" in api.objects("Job"), what="Job")
        )
        await asyncio.to_thread(api.set_status, "Job", "nightly-train-9e8d7c6b", status)
        return await asyncio.wait_for(launch, 60)

    result = asyncio.run(main())
    assert result.exit_code == code
    job = api.objects("Job")["nightly-train-9e8d7c6b"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_paused_schedule_is_a_suspended_cronjob(api: FakeApi) -> None:
    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster())
    step = AppSpec(name="train", command="python train.py", routes=())
    for paused in (False, True):
        asyncio.run(
            target.schedule(
                step,
                name="nightly-2am",
                cron="0 2 * * *",
                revision=1,
                droplet={},
                command=None,
                paused=paused,
            )
        )
        assert api.objects("CronJob")["nightly-2am"]["spec"]["suspend"] is paused


def test_no_kubeconfig_or_an_unknown_context_names_the_context(
    api: FakeApi, tmp_path: Path
) -> None:
    with pytest.raises(ClusterError, match="cannot use context 'elsewhere' of the kubeconfig"):
        api.cluster(context="elsewhere")
    missing = api.config()
    with pytest.raises(ClusterError, match="context 'kmock'"):
        Cluster.connect(missing, kubeconfig=str(tmp_path / "nothing-here"))


def test_an_unreachable_cluster_is_a_clear_error(api: FakeApi, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = api.kubeconfig.read_text().replace(f":{api.port}", f":{port}")
    (tmp_path / "closed").write_text(text)
    cluster = Cluster.connect(api.config(), kubeconfig=str(tmp_path / "closed"))
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API of context kmock"):
        cluster.get("Deployment", "triage")


def test_rollout_states_read_like_kubectl_rollout_status() -> None:
    spec = {"spec": {"replicas": 2}}
    assert rollout_state({**spec, "metadata": {"generation": 2}, "status": {}})[0] == "waiting"
    assert rollout_state({**spec, "status": {"updatedReplicas": 1}})[1] == (
        "1 of 2 replicas updated"
    )
    old = {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}
    assert rollout_state({**spec, "status": old})[1] == "1 old replicas to stop"
    assert rollout_state({**spec, "status": READY})[0] == "done"


def test_a_namespace_that_does_not_exist_says_how_to_make_it(api: FakeApi) -> None:
    missing = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "NotFound",
        "code": 404,
        "message": f'namespaces "{NAMESPACE}" not found',
    }
    api.handler[f"patch /api/v1/namespaces/{NAMESPACE}/services/triage"] << 404 << missing
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "triage"}}
    with pytest.raises(ClusterError) as caught:
        api.cluster().apply(service)
    assert caught.value.message == "namespace 'ds-team' does not exist in context kmock"
    assert caught.value.hint == "kubectl create namespace ds-team"


def test_an_autoscaled_apps_changes_leave_replicas_to_the_autoscaler(api: FakeApi) -> None:
    from conveyor.platform.policy import AutoscalingSpec

    target = KubernetesTarget(api.config(), builder=Builder(), cluster=api.cluster(), poll=0.05)
    spec = _spec(autoscaling=AutoscalingSpec(min_instances=2, max_instances=6))
    _, error = _push(api, target, spec, 1, lambda: _becomes_ready(api))
    assert error is None
    # The HPA made it 4 (the test plays it): a set-env must not take them back.
    api.send(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/triage",
        {"spec": {"replicas": 4}},
        "application/merge-patch+json",
    )
    api.set_status("Deployment", "triage", {k: 4 for k in READY})
    lines: list[str] = []
    assert asyncio.run(target.set_env("triage", {"LEVEL": "debug"}, [], lines.append)) == 2
    sent = [r for r in api.requests() if r.method == "PATCH" and r.subresource is None][-1]
    assert sent.headers["Content-Type"] == APPLY_TYPE
    assert "replicas" not in sent.data["spec"]
    assert "rolled out: 4 replicas available" in lines
    assert api.objects("Deployment")["triage"]["spec"]["replicas"] == 4
    # No ReplicaSet kept (no controller here): nothing to roll back to, said so.
    with pytest.raises(Exception, match="app 'triage' has no revision before 2 on the cluster"):
        asyncio.run(target.rollback("triage", None, lines.append))
    with pytest.raises(Exception, match="there is no app 'ghost' in namespace 'ds-team'"):
        asyncio.run(target.set_env("ghost", {"A": "1"}, [], lines.append))
    with pytest.raises(Exception, match="app 'triage' has no variable NOPE to unset"):
        asyncio.run(target.set_env("triage", {}, ["NOPE"], lines.append))
    with pytest.raises(Exception, match="'1X' is not a variable name"):
        asyncio.run(target.set_env("triage", {"1X": "1"}, [], lines.append))
