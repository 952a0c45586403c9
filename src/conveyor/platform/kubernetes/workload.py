"""One app at one revision on a cluster (:class:`Workload`): its lineage, labels and metadata.

What every object :mod:`.render` and :mod:`.jobs` make of an app carries: the
labels that select its pods (stable across revisions), the standard labels,
and the annotations with its revision and its model's lineage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.spec import AppSpec

if TYPE_CHECKING:
    from conveyor.repro.registered import ModelBlob

__all__ = [
    "STREAM_LABEL",
    "Workload",
    "app_component",
    "labels",
    "metadata",
    "model_lineage",
    "revision_annotations",
    "secret_name",
    "selector",
    "stored_model",
]

_ANNOTATION = "conveyor.dev/"
#: On a stream app's objects: the stream it belongs to (``stream info/undeploy --target``).
STREAM_LABEL = "conveyor.dev/stream"


@dataclass(frozen=True)
class Workload:
    """One app at one revision, as a cluster runs it."""

    spec: AppSpec
    revision: int
    #: The image built from the revision's droplet, pinned by digest.
    image: str
    #: Bound services: name -> credentials (binding parameters already merged in).
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Lineage for the annotations: ``model_digest``, ``run_id`` where known.
    lineage: Mapping[str, str] = field(default_factory=dict)
    #: The registered model a model app serves (looked up, and copied to the artifact root).
    model: ModelBlob | None = None


def model_lineage(spec: AppSpec, blob: ModelBlob | None = None) -> dict[str, str]:
    """The lineage annotations: the blob's digest, name, version and run when it was looked
    up, else what the spec itself tells (the run of a ``run:<id>/...`` model)."""
    if blob is not None:
        found = {
            "model_digest": blob.digest,
            "model_name": blob.name,
            "model_version": str(blob.version or ""),
            "run_id": blob.run_id or "",
        }
        return {k: v for k, v in found.items() if v}
    model = spec.model or ""
    if spec.kind == "model" and model.startswith("run:"):
        return {"run_id": model[4:].split("/", 1)[0]}
    return {}


def stored_model(spec: AppSpec) -> bool:
    """Whether a model app serves a registered model (pods read it from the artifact root)."""
    return spec.kind == "model" and (spec.model or "").startswith(("run:", "models:/"))


def selector(app: str) -> dict[str, str]:
    """The labels that pick an app's pods: stable across revisions (selectors are immutable)."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app}


def labels(app: str, revision: int, *, component: str | None = None) -> dict[str, str]:
    """The standard labels every object of an app carries."""
    out = {
        **selector(app),
        "app.kubernetes.io/version": str(revision),
        "app.kubernetes.io/managed-by": "conveyor",
    }
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def revision_annotations(work: Workload) -> dict[str, str]:
    """The revision and the model's lineage, as ``conveyor.dev/`` annotations."""
    out = {_ANNOTATION + "revision": str(work.revision)}
    for key in ("model_digest", "model_name", "model_version", "run_id"):
        if work.lineage.get(key):
            out[_ANNOTATION + key.replace("_", "-")] = str(work.lineage[key])
    return out


def metadata(work: Workload, config: KubernetesConfig, name: str) -> dict[str, Any]:
    """An object's metadata: its name, the namespace, the app's labels and annotations."""
    marks = labels(work.spec.name, work.revision, component=app_component(work.spec))
    if work.spec.kind == "stream" and work.spec.options.get("stream"):
        marks[STREAM_LABEL] = str(work.spec.options["stream"])
    return {
        "name": name,
        "namespace": config.namespace,
        "labels": marks,
        "annotations": revision_annotations(work),
    }


def app_component(spec: AppSpec) -> str:
    """The ``app.kubernetes.io/component`` of an app's objects."""
    return "stream-app" if spec.kind == "stream" else "app"


def secret_name(app: str) -> str:
    """The Secret holding an app's bound services (``services.json``)."""
    return f"{app}-services"
