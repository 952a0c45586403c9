"""The app's one container in a pod: image, command, variables, resources and probes.

A Deployment's pod template (:mod:`.render`) and a task step's Job
(:mod:`.jobs`) run it; a registered model's blob is read from the artifact
root with the bucket's credentials from the target's Secret.
"""

from __future__ import annotations

import json
import math
from typing import Any

from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.workload import Workload, secret_name
from conveyor.platform.spec import AppSpec, HealthCheckSpec

__all__ = ["CONTAINER_PORT", "container", "health_check"]

#: The port every app container listens on (``PORT`` tells the app).
CONTAINER_PORT = 8080
_SERVE = 'exec python -m conveyor serve "$MODEL" --host 0.0.0.0 --port "$PORT"'
#: A registered model's: its name, lineage and trusted types follow as arguments.
_SERVE_BLOB = _SERVE + ' "$@"'
#: What pods read the artifact root's credentials from, in the target's Secret.
_BUCKET_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),
    ("AWS_ENDPOINT_URL", True),
    ("AWS_REGION", True),
)


def _env(work: Workload, config: KubernetesConfig) -> list[dict[str, Any]]:
    spec = work.spec
    values: dict[str, str] = {
        **dict(spec.env),
        "PORT": str(CONTAINER_PORT),
        "CONVEYOR_APP": spec.name,
        "CONVEYOR_APP_REVISION": str(work.revision),
    }
    if config.artifact_root:
        values["CONVEYOR_ARTIFACTS"] = config.artifact_root
    if spec.kind == "model" and spec.model is not None:
        values["MODEL"] = spec.model if work.model is None else work.model.uri
    if work.model is not None:  # a registered model (served or scored): its blob, from the bucket
        values["CONVEYOR_ARTIFACT_ROOT"] = str(config.artifact_root)
    if spec.kind == "stream":
        values["CONVEYOR_STREAM_APP"] = json.dumps(spec.options["stream_app"], sort_keys=True)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(values.items())]
    if work.model is not None and config.artifact_secret:
        env.extend(
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {
                        "name": config.artifact_secret,
                        "key": key,
                        **({"optional": True} if optional else {}),
                    }
                },
            }
            for key, optional in _BUCKET_KEYS
        )
    if spec.services:
        env.append(
            {
                "name": "CONVEYOR_SERVICES",
                "valueFrom": {
                    "secretKeyRef": {"name": secret_name(spec.name), "key": "services.json"}
                },
            }
        )
    return env


def _command(work: Workload) -> list[str]:
    spec, blob = work.spec, work.model
    if spec.kind == "stream":  # a score app's model is in its launch spec
        return ["python", "-m", "conveyor.streams.run"]
    if blob is not None:
        # Lineage and trust travel with the pod: it reads no registry.
        options = ["--name", blob.name]
        if blob.run_id:
            options += ["--run-id", blob.run_id]
        if blob.version:
            options += ["--model-version", str(blob.version)]
        for name in blob.trusted_types:
            options += ["--trust-type", name]
        return ["/bin/sh", "-c", _SERVE_BLOB, "conveyor", *options]
    if spec.kind == "model":
        return ["/bin/sh", "-c", _SERVE]
    return ["/bin/sh", "-c", f"exec {spec.command}"]


def _probe(check: HealthCheckSpec, *, startup: bool = False) -> dict[str, Any]:
    how: dict[str, Any] = (
        {"httpGet": {"path": check.endpoint, "port": "http"}}
        if check.type == "http"
        else {"tcpSocket": {"port": "http"}}
    )
    period = max(1, math.ceil(check.interval))
    probe = {
        **how,
        "periodSeconds": period,
        "timeoutSeconds": max(1, math.ceil(check.invocation_timeout)),
        "failureThreshold": 3,
    }
    if startup:
        # Locally an instance has `timeout` seconds to become healthy; so here.
        probe["periodSeconds"] = 1
        probe["failureThreshold"] = max(1, math.ceil(check.timeout))
    return probe


def health_check(spec: AppSpec) -> HealthCheckSpec:
    """The app's check; a model or stream app's default one is its ready endpoint."""
    if spec.kind == "model" and spec.default_health:
        return HealthCheckSpec(type="http", endpoint="/v2/health/ready")
    if spec.kind == "stream" and spec.default_health:
        return HealthCheckSpec(type="http", endpoint="/health")
    return spec.health_check


def container(work: Workload, config: KubernetesConfig) -> dict[str, Any]:
    """The app's one container: image, command, variables, resources and probes."""
    spec = work.spec
    container: dict[str, Any] = {
        "name": "app",
        "image": work.image,
        "command": _command(work),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(work, config),
    }
    resources: dict[str, str] = {}
    if spec.memory is not None:
        resources["memory"] = _quantity(spec.memory)
    if spec.disk is not None:
        resources["ephemeral-storage"] = _quantity(spec.disk)
    if resources:
        container["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    check = health_check(spec)
    if check.type != "process":
        ready = spec.readiness_check or check
        container["startupProbe"] = _probe(check, startup=True)
        container["livenessProbe"] = _probe(check)
        container["readinessProbe"] = _probe(ready)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return container


def _quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, unit in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
