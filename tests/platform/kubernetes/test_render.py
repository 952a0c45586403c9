"""Rendered objects: valid against the official schemas (strict), consistent, and pinned."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped]

from conveyor.errors import UsageError
from conveyor.platform.canary import CanaryPolicy
from conveyor.platform.kubernetes import (
    KubernetesConfig,
    Workload,
    render_app,
    render_cronjob,
    to_yaml,
)
from conveyor.platform.kubernetes.render import check_app
from conveyor.platform.policy import AutoscalingSpec, ScalingRule
from conveyor.platform.spec import AppSpec, RouteSpec

from .examples import (
    GATEWAY,
    PROD,
    RUN,
    TRUSTED,
    api_app,
    champion,
    diagnosis,
    examples,
    following,
    stream_app,
    train_step,
    work,
)

GOLDEN = Path(__file__).parent / "golden"
#: The oldest and the newest Kubernetes whose schemas kubernetes-validate ships.
VERSIONS = ("1.25.0", "1.37.0")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(Ki|Mi|Gi)?")
#: Kinds that are CRDs (the Gateway API): no schema ships with kubernetes-validate.
_CRDS = {"HTTPRoute"}


def _all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{name}/{o['kind']}", o) for name, objs in examples().items() for o in objs]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_object_is_valid_in_strict_mode(version: str) -> None:
    checked = 0
    for where, obj in _all_objects():
        if obj["kind"] in _CRDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not valid for Kubernetes {version}: {exc.message}")
        checked += 1
    assert checked >= 15


def test_strict_validation_would_catch_an_unknown_field() -> None:
    deployment = render_app(work(diagnosis()), PROD)[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["healthCheck"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="healthCheck"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_names_labels_and_selectors_hold_together() -> None:
    for where, obj in _all_objects():
        meta = obj["metadata"]
        assert _DNS_LABEL.fullmatch(meta["name"]), where
        assert meta["namespace"] == "ds-team", where
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "conveyor", where
        assert meta["annotations"]["conveyor.dev/revision"].isdigit(), where
        if obj["kind"] == "Secret":
            continue
        pods = _pod_labels(obj)
        selector = obj["spec"].get("selector")
        if obj["kind"] in {"Deployment", "PodDisruptionBudget"}:
            assert selector["matchLabels"].items() <= pods.items(), where
        if obj["kind"] == "Deployment":
            # Selectors are immutable: never the revision, which changes on every push.
            assert "app.kubernetes.io/version" not in selector["matchLabels"]
    for name in ("diagnosis", "triage"):
        objects = {o["kind"]: o for o in examples()[name]}
        template = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
        assert objects["Service"]["spec"]["selector"].items() <= template.items()
        assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
            template.items()
        )


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj["spec"]
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return dict(template["metadata"]["labels"]) if template else dict(obj["metadata"]["labels"])


def test_a_deployment_says_what_the_manifest_says() -> None:
    objects = {o["kind"]: o for o in render_app(work(api_app(), 4), PROD)}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "4"
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    assert box["resources"]["limits"] == {"memory": "512Mi", "ephemeral-storage": "1Gi"}
    assert box["resources"]["requests"] == box["resources"]["limits"]
    for quantity in box["resources"]["limits"].values():
        assert _QUANTITY.fullmatch(quantity)
    assert box["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert box["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert box["startupProbe"]["failureThreshold"] == 30  # the check's 30 s to become healthy
    env = {e["name"]: e for e in box["env"]}
    assert env["LOG_LEVEL"]["value"] == "info"
    assert env["PORT"]["value"] == "8080"
    assert env["CONVEYOR_SERVICES"]["valueFrom"]["secretKeyRef"]["name"] == "triage-services"
    secret = objects["Secret"]
    services = json.loads(base64.b64decode(secret["data"]["services.json"]))
    assert services == {
        "user-provided": [
            {
                "name": "warehouse",
                "credentials": {"schema": "triage", "url": "postgresql://db.ds/warehouse"},
            }
        ]
    }
    ingress = objects["Ingress"]["spec"]["rules"]
    assert [r.get("host") for r in ingress] == ["triage.example.com", None]
    assert ingress[1]["http"]["paths"][0]["path"] == "/triage"


def test_lineage_annotations_name_the_model_and_its_run() -> None:
    deployment = render_app(work(diagnosis()), PROD)[0]
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["conveyor.dev/run-id"] == "3f2a9c0d1e2b4c5d"
    assert notes["conveyor.dev/model-digest"].startswith("blake3:")


def test_a_registered_model_is_served_from_the_artifact_root_with_its_recorded_trust() -> None:
    deployment = render_app(work(champion()), PROD)[0]
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["conveyor.dev/model-name"] == "diagnosis"
    assert notes["conveyor.dev/model-version"] == "3"
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    values = {e["name"]: e.get("value") for e in box["env"]}
    assert values["MODEL"] == "artifact:blake3:" + "cd" * 32 + "/model.skops"
    assert values["CONVEYOR_ARTIFACT_ROOT"] == "s3://conveyor-artifacts/ds"
    # The pod reads no registry: name, lineage and trusted types are its arguments.
    assert box["command"][3:] == [
        "conveyor", "--name", "diagnosis", "--run-id", RUN, "--model-version", "3",
        "--trust-type", TRUSTED[0], "--trust-type", TRUSTED[1],
    ]  # fmt: skip
    # Credentials only by reference to the target's Secret, never as values.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in box["env"] if "valueFrom" in e}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "conveyor-artifacts", "key": "AWS_ACCESS_KEY_ID"}
    assert refs["AWS_ENDPOINT_URL"]["optional"] is True
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & {
        e["name"] for e in box["env"] if "value" in e
    }


def test_an_app_following_its_alias_leaves_the_alias_and_its_spec_on_the_deployment() -> None:
    deployment = render_app(work(following()), PROD)[0]
    meta = deployment["metadata"]
    assert meta["labels"]["conveyor.dev/follow-alias"] == "true"
    assert meta["annotations"]["conveyor.dev/follow-alias"] == "models:/diagnosis@champion"
    kept = AppSpec.from_json("diagnosis", json.loads(meta["annotations"]["conveyor.dev/app-spec"]))
    assert kept == following()  # what the follower renders again when the alias moves
    pinned = render_app(work(champion()), PROD)[0]["metadata"]
    assert "conveyor.dev/follow-alias" not in pinned["labels"]
    with pytest.raises(UsageError, match="follow-alias needs 'model: models:/<name>@<alias>'"):
        check_app(AppSpec(name="d", model=f"run:{RUN}/model", options={"follow_alias": True}), PROD)


def test_a_stream_score_app_reads_its_registered_model_from_the_artifact_root() -> None:
    box = render_app(work(stream_app()), PROD)[0]["spec"]["template"]["spec"]["containers"][0]
    assert box["command"] == ["python", "-m", "conveyor.streams.run"]
    values = {e["name"]: e.get("value") for e in box["env"]}
    assert "MODEL" not in values
    assert values["CONVEYOR_ARTIFACT_ROOT"] == "s3://conveyor-artifacts/ds"
    options = json.loads(values["CONVEYOR_STREAM_APP"])["options"]
    assert options["model"] == "artifact:blake3:" + "cd" * 32 + "/model.skops"
    assert options["model-trusted-types"] == ",".join(TRUSTED)
    refs = {e["name"] for e in box["env"] if "valueFrom" in e}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= refs


def test_a_registered_model_app_not_looked_up_is_refused() -> None:
    bare = Workload(champion(), 1, "r.example/ds/x:1")
    with pytest.raises(UsageError, match="was not looked up in the registry"):
        render_app(bare, PROD)


def test_the_gateway_target_routes_through_an_httproute_that_strips_the_prefix() -> None:
    spec = AppSpec(
        name="triage", command="python app.py", routes=(RouteSpec(path="/t", strip_prefix=True),)
    )
    objects = {o["kind"]: o for o in render_app(work(spec), GATEWAY)}
    assert "Ingress" not in objects
    route = objects["HTTPRoute"]["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "infra"}]
    rule = route["rules"][0]
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/t"}
    assert rule["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] == "/"
    assert rule["backendRefs"] == [{"name": "triage", "port": 80}]


def test_a_worker_gets_no_service_and_a_stream_app_reads_its_binder() -> None:
    objects = render_app(work(stream_app()), PROD)
    assert [o["kind"] for o in objects] == ["Deployment", "PodDisruptionBudget"]
    env = {
        e["name"]: e.get("value")
        for e in objects[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert json.loads(env["CONVEYOR_STREAM_APP"])["binder"] == "kafka://kafka.ds:9092"


def test_autoscaling_becomes_an_hpa_that_owns_the_replicas() -> None:
    policy = AutoscalingSpec(
        min_instances=2,
        max_instances=8,
        rules=(
            ScalingRule(metric="cpu", threshold=70),
            ScalingRule(metric="cpu", threshold=20, operator="<", adjustment="-1"),
            ScalingRule(metric="memory", threshold="80%"),
        ),
        cool_down="2m",
    )
    spec = AppSpec(name="triage", command="python app.py", autoscaling=policy)
    objects = {o["kind"]: o for o in render_app(work(spec), PROD)}
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    targets = {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
        for m in hpa["spec"]["metrics"]
    }
    assert targets == {"cpu": 70, "memory": 80}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    for version in VERSIONS:
        kubernetes_validate.validate(hpa, version, strict=True)


def test_a_canary_policy_is_refused_on_a_cluster() -> None:
    spec = AppSpec(name="triage", command="python app.py", canary=CanaryPolicy(weight=10))
    with pytest.raises(UsageError, match="canary: splits requests in Conveyor's router"):
        render_app(work(spec), PROD)


@pytest.mark.parametrize(
    ("policy", "refused"),
    [
        (AutoscalingSpec(min_instances=0, max_instances=2), "min-instances 0"),
        (AutoscalingSpec(max_instances=4, target_ongoing_requests=4), "target-ongoing-requests"),
        (
            AutoscalingSpec(
                max_instances=4, rules=(ScalingRule(metric="response-time-p95", threshold="200ms"),)
            ),
            "rule on response-time-p95",
        ),
    ],
)
def test_autoscaling_a_plain_hpa_cannot_express_is_refused_by_name(
    policy: AutoscalingSpec, refused: str
) -> None:
    spec = AppSpec(name="triage", command="python app.py", autoscaling=policy)
    with pytest.raises(UsageError, match=refused):
        render_app(work(spec), PROD)


@pytest.mark.parametrize(
    ("spec", "config", "message"),
    [
        (
            AppSpec(name="t", command="x", routes=(RouteSpec(path="/t", strip_prefix=True),)),
            PROD,
            "strips its prefix, which an Ingress cannot do",
        ),
        (
            AppSpec(name="s", kind="stream", options={"stream_app": {"binder": "embedded"}}),
            PROD,
            "the embedded binder is a file on this machine",
        ),
        (
            AppSpec(name="m", model="run:abc/model"),
            KubernetesConfig(context=None, namespace="ds", registry="r.example/ds"),
            "has no artifact root",
        ),
    ],
)
def test_what_a_cluster_cannot_express_is_refused_by_name(
    spec: AppSpec, config: KubernetesConfig, message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        render_app(work(spec), config)
    assert repr(spec.name) in caught.value.message


def test_a_schedule_needs_five_fields_and_pauses_as_suspend() -> None:
    with pytest.raises(UsageError, match="5-field cron"):
        render_cronjob(work(train_step()), PROD, name="n", cron="@daily")
    paused = render_cronjob(work(train_step()), PROD, name="n", cron="0 2 * * *", paused=True)
    assert paused["spec"]["suspend"] is True


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("namespace", "DS_team", "not a DNS label"),
        ("registry", "no-repository", "HOST\\[:PORT\\]/REPOSITORY"),
        ("artifact_root", "/var/artifacts", "not an s3:// URL"),
        ("gateway", "infra/public/x", "not NAME or NAMESPACE/NAME"),
        ("ingress_class", "Nginx Public", "not a DNS label"),
        ("artifact_secret", "S3 Keys", "not a Secret's name"),
        ("artifact_secret", "s3-keys", "there is no --artifact-root"),
    ],
)
def test_a_bad_target_setting_is_refused(setting: str, value: str, message: str) -> None:
    good = {"context": "c", "namespace": "ds", "registry": "r.example/ds"}
    with pytest.raises(UsageError, match=message):
        KubernetesConfig.from_json({**good, setting: value})


@pytest.mark.parametrize("name", sorted(examples()))
def test_golden_files_pin_the_examples_yaml(name: str) -> None:
    text = to_yaml(examples()[name])
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("CONVEYOR_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; run with CONVEYOR_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} renders differently from {path}"
    assert list(yaml.safe_load_all(text)) == examples()[name]
