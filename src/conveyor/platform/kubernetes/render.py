"""Apps as Kubernetes objects: what ``conveyor k8s render`` prints and a push applies.

One app (one :class:`~conveyor.platform.spec.AppSpec` at one revision, in an
image built from its droplet) becomes a Deployment (replicas, memory and disk
from the manifest, the app's variables, bound services as a Secret read into
``CONVEYOR_SERVICES``, probes from the health check, a rolling update that
never drops below the wanted replicas), a PodDisruptionBudget, a Service, its
routes as an Ingress or a Gateway API HTTPRoute (per target), and a
HorizontalPodAutoscaler when the manifest asks for autoscaling. Stream apps
are Deployments like any other, their binder's URL in their launch spec. A
model app of a registered model (``run:``/``models:/``) serves the blob the
push looked up (:class:`~conveyor.repro.registered.ModelBlob`):
``conveyor serve artifact:<digest>/<file>`` against ``CONVEYOR_ARTIFACT_ROOT``,
with the types its run recorded, the bucket's credentials from the target's
Secret (never in the manifest).

What a target cannot express is refused here, before anything is applied
(:func:`check_app`). Every object is a plain dict, in a fixed key order, so the
YAML is the same on every render (the golden files pin it). The pod's
container is :mod:`.pod`'s, the labels and lineage every object carries
:mod:`.workload`'s (their names other modules use are importable here too).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.pod import CONTAINER_PORT, container, health_check
from conveyor.platform.kubernetes.workload import (
    STREAM_LABEL,
    Workload,
    app_component,
    labels,
    metadata,
    model_lineage,
    revision_annotations,
    secret_name,
    selector,
    stored_model,
)
from conveyor.platform.policy import AutoscalingSpec
from conveyor.platform.spec import AppSpec, RouteSpec

__all__ = [
    "APP_SPEC",
    "CONTAINER_PORT",
    "FOLLOW_ALIAS",
    "STREAM_LABEL",
    "Workload",
    "check_app",
    "container",
    "labels",
    "metadata",
    "model_lineage",
    "render_app",
    "selector",
    "stored_model",
]

#: On the Deployment of an app that follows its model's alias: the alias (annotation) and
#: "true" (label, to find them); :data:`APP_SPEC` holds the spec the follower renders again.
FOLLOW_ALIAS = "conveyor.dev/follow-alias"
APP_SPEC = "conveyor.dev/app-spec"


def _follow_marks(spec: AppSpec, meta: dict[str, Any]) -> dict[str, Any]:
    """The cluster remembers which apps follow which alias (the platform keeps no copy)."""
    if spec.options.get("follow_alias"):
        meta["labels"][FOLLOW_ALIAS] = "true"
        meta["annotations"][FOLLOW_ALIAS] = str(spec.model)
        meta["annotations"][APP_SPEC] = json.dumps(
            spec.to_json(), sort_keys=True, separators=(",", ":")
        )
    return meta


def check_app(spec: AppSpec, config: KubernetesConfig) -> None:
    """Refuse what the target cannot run as the manifest means it, naming app and field."""
    where = f"app {spec.name!r}"
    if len(spec.name) > 52:  # leaves room for the "-services" suffix of its Secret
        raise UsageError(f"{where}: a name longer than 52 characters cannot be deployed here")
    for route in _routes(spec, config):
        if route.strip_prefix and config.routing == "ingress":
            raise UsageError(
                f"{where}: route {route.path!r} strips its prefix, which an Ingress cannot do "
                "portably",
                hint="Set strip-prefix: false, or use a target with --routing gateway "
                "(an HTTPRoute rewrites the prefix).",
            )
    if spec.kind == "stream":
        binder = str(spec.options.get("stream_app", {}).get("binder") or "embedded")
        if binder.startswith("embedded"):
            raise UsageError(
                f"{where}: the embedded binder is a file on this machine; pods cannot share it",
                hint="Deploy the stream with --binder kafka://..., redis://... or amqp://...",
            )
    if spec.canary is not None:
        raise UsageError(
            f"{where}: canary: splits requests in Conveyor's router, which a cluster does not "
            "run; a push there is a rolling update",
            hint="Remove canary: for this target (or use a mesh's traffic split by hand).",
        )
    model = spec.model or ""
    if spec.options.get("follow_alias") and not (model.startswith("models:/") and "@" in model):
        raise UsageError(f"{where}: follow-alias needs 'model: models:/<name>@<alias>'")
    if stored_model(spec) and config.artifact_root is None:
        raise UsageError(
            f"{where}: model {spec.model!r} lives in the artifact store, and the target "
            "has no artifact root pods can read",
            hint="Add the target again with --artifact-root s3://BUCKET/PREFIX.",
        )


def _routes(spec: AppSpec, config: KubernetesConfig) -> tuple[RouteSpec, ...]:
    """The routes from outside the cluster.

    The platform's default (None) is ``/<name>`` with its prefix stripped: an
    HTTPRoute can say that; an Ingress cannot portably, so there the app is
    reached inside the cluster only, through its Service (give it ``routes:``
    with a host to reach it from outside).
    """
    if spec.routes is None:
        if config.routing == "gateway":
            return (RouteSpec(path=f"/{spec.name}", strip_prefix=True),)
        return ()
    return spec.routes


def render_app(work: Workload, config: KubernetesConfig) -> list[dict[str, Any]]:
    """Every object of one app, in the order they are applied (what the Deployment reads first)."""
    spec = work.spec
    check_app(spec, config)
    if stored_model(spec) and work.model is None:
        raise UsageError(
            f"app {spec.name!r}: model {spec.model!r} was not looked up in the registry; "
            "a push or render through the platform does that"
        )
    objects: list[dict[str, Any]] = []
    if spec.services:
        objects.append(_secret(work, config))
    objects.append(_deployment(work, config))
    objects.append(_disruption_budget(work, config))
    if spec.routes != ():  # a worker (no routes at all) serves nothing
        objects.append(_service(work, config))
    routes = _routes(spec, config)
    if routes:
        objects.append(
            _ingress(work, config, routes)
            if config.routing == "ingress"
            else _http_route(work, config, routes)
        )
    autoscaling = spec.autoscaling
    if autoscaling is not None:
        objects.append(_autoscaler(work, config, autoscaling))
    return objects


def services_json(services: Mapping[str, Mapping[str, Any]]) -> str:
    """``CONVEYOR_SERVICES`` as locally: ``{"user-provided": [{"name", "credentials"}]}``."""
    bound = [{"name": s, "credentials": dict(c)} for s, c in sorted(services.items())]
    return json.dumps({"user-provided": bound}, sort_keys=True)


def _secret(work: Workload, config: KubernetesConfig) -> dict[str, Any]:
    data = services_json(work.services).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(work, config, secret_name(work.spec.name)),
        "type": "Opaque",
        "data": {"services.json": base64.b64encode(data).decode()},
    }


def _deployment(work: Workload, config: KubernetesConfig) -> dict[str, Any]:
    spec = work.spec
    app = spec.name
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _follow_marks(spec, metadata(work, config, app)),
        "spec": {},
    }
    deployment: dict[str, Any] = body["spec"]
    if spec.autoscaling is None:
        deployment["replicas"] = spec.instances  # with an HPA, it owns the replicas
    check = health_check(spec)
    deployment.update(
        {
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": max(60, math.ceil(check.timeout) * 2),
            "selector": {"matchLabels": selector(app)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(app, work.revision, component=app_component(spec)),
                    "annotations": revision_annotations(work),
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container(work, config)],
                },
            },
        }
    )
    return body


def _disruption_budget(work: Workload, config: KubernetesConfig) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(work, config, work.spec.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(work.spec.name)}},
    }


def _service(work: Workload, config: KubernetesConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(work, config, work.spec.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(work.spec.name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _ingress(
    work: Workload, config: KubernetesConfig, routes: tuple[RouteSpec, ...]
) -> dict[str, Any]:
    backend = {"service": {"name": work.spec.name, "port": {"name": "http"}}}
    by_host: dict[str | None, list[dict[str, Any]]] = {}
    for route in routes:
        path = {"path": route.path or "/", "pathType": "Prefix", "backend": backend}
        by_host.setdefault(route.host, []).append(path)
    rules: list[dict[str, Any]] = []
    for host, paths in by_host.items():
        rule: dict[str, Any] = {} if host is None else {"host": host}
        rule["http"] = {"paths": paths}
        rules.append(rule)
    spec: dict[str, Any] = {}
    if config.ingress_class:
        spec["ingressClassName"] = config.ingress_class
    spec["rules"] = rules
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(work, config, work.spec.name),
        "spec": spec,
    }


def _http_route(
    work: Workload, config: KubernetesConfig, routes: tuple[RouteSpec, ...]
) -> dict[str, Any]:
    gateway = str(config.gateway)
    namespace, _, name = gateway.rpartition("/")
    parent: dict[str, Any] = {"name": name}
    if namespace:
        parent["namespace"] = namespace
    hosts = sorted({r.host for r in routes if r.host})
    rules = []
    for route in routes:
        rule: dict[str, Any] = {
            "matches": [{"path": {"type": "PathPrefix", "value": route.path or "/"}}],
            "backendRefs": [{"name": work.spec.name, "port": 80}],
        }
        if route.strip_prefix and route.path:
            rule["filters"] = [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ]
        rules.append(rule)
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if hosts:
        spec["hostnames"] = hosts
    spec["rules"] = rules
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(work, config, work.spec.name),
        "spec": spec,
    }


def _autoscaler(
    work: Workload, config: KubernetesConfig, autoscaling: AutoscalingSpec
) -> dict[str, Any]:
    """An HPA from the manifest's ``autoscaling:``: bounds, CPU and memory rules, cool-down.

    What a plain HPA cannot measure (the router's ongoing requests, throughput and p95,
    a stream's lag) or do (scale to zero) is refused by name before anything is applied.
    """
    app = work.spec.name

    def refuse(what: str) -> UsageError:
        return UsageError(
            f"app {app!r}: autoscaling {what} cannot be expressed by a Kubernetes "
            "HorizontalPodAutoscaler on this target",
            hint="Scale on cpu or memory rules there (or run the app on the local target).",
        )

    if autoscaling.min_instances == 0:
        raise refuse("min-instances 0 (scale to zero)")
    if autoscaling.target_ongoing_requests is not None:
        raise refuse("target-ongoing-requests")
    if autoscaling.target_lag is not None:
        raise refuse("lag-target")
    metrics: dict[str, int] = {}
    for rule in autoscaling.rules:
        if rule.metric not in ("cpu", "memory"):
            raise refuse(f"rule on {rule.metric}")
        if rule.scales_up:  # the HPA scales both ways around one target utilisation
            metrics[rule.metric] = round(float(rule.threshold))
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
        "minReplicas": autoscaling.min_instances,
        "maxReplicas": autoscaling.max_instances,
        "behavior": {
            "scaleDown": {"stabilizationWindowSeconds": round(float(autoscaling.cool_down))}
        },
    }
    if metrics:
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": name,
                    "target": {"type": "Utilization", "averageUtilization": percent},
                },
            }
            for name, percent in sorted(metrics.items())
        ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(work, config, work.spec.name),
        "spec": spec,
    }
