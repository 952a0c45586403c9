"""The README demo's apps as a cluster runs them: the objects the golden files pin."""

from __future__ import annotations

from typing import Any

from conveyor.orchestrate.cluster_streams import scored_models
from conveyor.platform.kubernetes import (
    KubernetesConfig,
    Workload,
    job_name,
    render_app,
    render_cronjob,
    render_job,
)
from conveyor.platform.kubernetes.render import model_lineage
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec
from conveyor.repro.registered import ModelBlob

RUN = "3f2a9c0d1e2b4c5d"
IMAGE = "registry.example.com/ds/{}@sha256:" + "ab" * 32

PROD = KubernetesConfig(
    context="my-cluster",
    namespace="ds-team",
    registry="registry.example.com/ds",
    artifact_root="s3://conveyor-artifacts/ds",
    artifact_secret="conveyor-artifacts",
)
#: The types the demo's training run recorded for its pipeline (trust by provenance).
TRUSTED = ("numpy.dtype", "sklearn.compose._column_transformer._RemainderColsList")
GATEWAY = KubernetesConfig(
    context="my-cluster",
    namespace="ds-team",
    registry="registry.example.com/ds",
    artifact_root="s3://conveyor-artifacts/ds",
    routing="gateway",
    gateway="infra/public",
)


def diagnosis() -> AppSpec:
    """The demo's model app: `model: run:<id>/model`, two instances."""
    return AppSpec(name="diagnosis", model=f"run:{RUN}/model", instances=2)


def champion() -> AppSpec:
    """The demo's model app following the registry: `model: models:/diagnosis@champion`."""
    return AppSpec(name="diagnosis", model="models:/diagnosis@champion", instances=2)


def following() -> AppSpec:
    """The champion app with `follow-alias: true`: it rolls when the alias moves."""
    return AppSpec(
        name="diagnosis",
        model="models:/diagnosis@champion",
        instances=2,
        options={"follow_alias": True},
    )


def blob(spec: AppSpec) -> ModelBlob:
    """What the registry says of the demo's model (version 3 when registered)."""
    version = 3 if (spec.model or "").startswith("models:/") else None
    name = "diagnosis" if version else "model"
    return ModelBlob("blake3:" + "cd" * 32, "model.skops", name, RUN, version, TRUSTED)


def api_app() -> AppSpec:
    """A command app using everything a manifest can say that a cluster can express."""
    return AppSpec(
        name="triage",
        command="python app.py",
        instances=3,
        memory=512 * 1024 * 1024,
        disk=1024 * 1024 * 1024,
        env={"LOG_LEVEL": "info"},
        routes=(RouteSpec(host="triage.example.com"), RouteSpec(path="/triage")),
        health_check=HealthCheckSpec(type="http", endpoint="/health", timeout=30, interval=5),
        readiness_check=HealthCheckSpec(type="http", endpoint="/ready"),
        services=("warehouse",),
        service_parameters={"warehouse": {"schema": "triage"}},
    )


def stream_app() -> AppSpec:
    """The demo stream's `score` app on a Kafka binder, as planned (`--model=run:...`)."""
    launch = {
        "app": "score",
        "stream": "diagnose",
        "label": "score",
        "binder": "kafka://kafka.ds:9092",
        "input": "diagnose.file",
        "output": "diagnose.score",
        "group": "diagnose",
        "options": {"model": f"run:{RUN}/model"},
    }
    return AppSpec(
        name="diagnose-score",
        kind="stream",
        routes=(),
        options={"stream_app": launch, "stream": "diagnose", "position": 1},
    )


def train_step() -> AppSpec:
    """The demo task's `train` app (`python train.py`)."""
    return AppSpec(name="train", command="python train.py", routes=())


def work(spec: AppSpec, revision: int = 1) -> Workload:
    services = {"warehouse": {"schema": "triage", "url": "postgresql://db.ds/warehouse"}}
    model = blob(spec) if spec.kind == "model" else None
    if spec.kind == "stream":  # as a deploy makes it: its model published, read from the root
        ((spec, model),) = scored_models([spec], lambda uri: blob(AppSpec(name="m", model=uri)))
    return Workload(
        spec,
        revision,
        IMAGE.format(spec.name),
        {s: services[s] for s in spec.services},
        model_lineage(spec, model),
        model,
    )


def examples() -> dict[str, list[dict[str, Any]]]:
    """Golden file name -> the objects rendered for it."""
    train = work(train_step())
    return {
        "diagnosis": render_app(work(diagnosis()), PROD),
        "diagnosis-champion": render_app(work(champion()), PROD),
        "diagnosis-follow": render_app(work(following()), PROD),
        "triage": render_app(work(api_app(), 4), PROD),
        "triage-gateway": render_app(work(api_app(), 4), GATEWAY),
        "diagnose-score": render_app(work(stream_app()), PROD),
        "nightly-train-job": [
            render_job(
                train,
                PROD,
                name=job_name("nightly", "train-gbm", "9e8d7c6b5a4f3e2d"),
                command=["/bin/sh", "-c", "exec python train.py --n_estimators=150"],
            )
        ],
        "nightly-2am-cronjob": [
            render_cronjob(
                train,
                PROD,
                name="nightly-2am",
                cron="0 2 * * *",
                time_zone="Europe/London",
                command=["python", "-m", "conveyor", "task", "launch", "nightly", "--wait"],
            )
        ],
    }
