"""A Kubernetes target's settings, as ``conveyor target add --kubernetes`` records them.

>>> cfg = KubernetesConfig.from_json(
...     {"context": "c", "namespace": "ds-team", "registry": "registry.example.com/ds"})
>>> cfg.routing, cfg.to_json()["namespace"]
('ingress', 'ds-team')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from conveyor.errors import UsageError

__all__ = ["ROUTINGS", "KubernetesConfig"]

#: How routes reach a cluster's apps: an Ingress, or a Gateway API HTTPRoute.
ROUTINGS = ("ingress", "gateway")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._-]+)+")


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and how a Kubernetes target deploys; every field is checked on creation."""

    #: The kubeconfig context (None: the kubeconfig's current one).
    context: str | None
    namespace: str
    #: Where images are pushed and pulled: ``HOST[:PORT]/REPO``.
    registry: str
    #: Where pods read models and artifacts (``s3://bucket/prefix``); None: none reachable.
    artifact_root: str | None = None
    #: The Secret in the namespace pods read the artifact root's credentials from (keys
    #: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; optional AWS_SESSION_TOKEN,
    #: AWS_ENDPOINT_URL, AWS_REGION); None: the pods' own identity (an IAM role for the
    #: service account, an instance role).
    artifact_secret: str | None = None
    routing: Literal["ingress", "gateway"] = "ingress"
    #: The IngressClass to use (routing "ingress"); None: the cluster's default.
    ingress_class: str | None = None
    #: The Gateway the HTTPRoutes attach to (routing "gateway"): ``[NAMESPACE/]NAME``.
    gateway: str | None = None
    #: The image apps are built on; None: the official slim Python of the droplet's Python.
    base_image: str | None = None
    #: The image model apps are built on: one with Conveyor installed (``conveyor serve``);
    #: None: a model app needs an image given (``--image``).
    runtime_image: str | None = None

    def __post_init__(self) -> None:
        if not _LABEL.fullmatch(self.namespace):
            raise UsageError(
                f"namespace {self.namespace!r} is not a DNS label (a-z, 0-9 and '-', at most 63)"
            )
        if not _REGISTRY.fullmatch(self.registry):
            raise UsageError(
                f"registry {self.registry!r} is not HOST[:PORT]/REPOSITORY",
                hint="For example --registry registry.example.com/ds",
            )
        if self.artifact_root is not None and not self.artifact_root.startswith("s3://"):
            raise UsageError(
                f"artifact root {self.artifact_root!r} is not an s3:// URL",
                hint="Pods read models through the S3-compatible artifact store, "
                "never from this machine's folder.",
            )
        if self.artifact_secret is not None and not _SUBDOMAIN.fullmatch(self.artifact_secret):
            raise UsageError(
                f"artifact secret {self.artifact_secret!r} is not a Secret's name "
                "(a-z, 0-9, '-' and '.', at most 253)"
            )
        if self.artifact_secret is not None and self.artifact_root is None:
            raise UsageError(
                "--artifact-secret holds the artifact root's credentials, and there is no "
                "--artifact-root",
                hint="Give --artifact-root s3://BUCKET/PREFIX too.",
            )
        if self.routing not in ROUTINGS:
            raise UsageError(f"routing {self.routing!r} is not one of {', '.join(ROUTINGS)}")
        if self.gateway is not None and not all(
            _LABEL.fullmatch(part) for part in self.gateway.split("/", 1)
        ):
            raise UsageError(f"gateway {self.gateway!r} is not NAME or NAMESPACE/NAME")
        if self.ingress_class is not None and not _LABEL.fullmatch(self.ingress_class):
            raise UsageError(f"ingress class {self.ingress_class!r} is not a DNS label")
        if self.routing == "gateway" and not self.gateway:
            raise UsageError(
                "routing through the Gateway API needs the gateway's name",
                hint="Add --gateway NAME (or NAMESPACE/NAME).",
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KubernetesConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown Kubernetes target settings: {', '.join(unknown)}")
        if not data.get("namespace") or not data.get("registry"):
            raise UsageError("a Kubernetes target needs a namespace and a registry")
        return cls(**{k: data[k] for k in known if k in data})
