"""The Kubernetes target: apps, stream apps, task steps and schedules on a cluster.

:mod:`.config` holds a target's settings, :mod:`.render` and :mod:`.jobs` turn
app specs into objects (plain dicts, what ``conveyor k8s render`` prints; their
parts :mod:`.workload` and :mod:`.pod`),
:mod:`.client` speaks to the API server through the official client, and
:mod:`.deploy` applies, watches the rollout and rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml  # type: ignore[import-untyped]

from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.jobs import job_name, render_cronjob, render_job
from conveyor.platform.kubernetes.render import (
    Workload,
    check_app,
    labels,
    model_lineage,
    render_app,
    selector,
)
from conveyor.platform.spec import AppSpec

if TYPE_CHECKING:
    from conveyor.repro.registered import ModelBlob

__all__ = [
    "ImageBuilder",
    "KubernetesConfig",
    "Workload",
    "check_app",
    "job_name",
    "labels",
    "render_app",
    "render_cronjob",
    "render_job",
    "render_manifests",
    "selector",
    "to_yaml",
]

#: Builds (or finds) the image of a droplet: ``(droplet, labels) -> pinned image ref``
#: (``registry/repo@sha256:...``). The platform's OCI builder is one; tests give a fixed one.
ImageBuilder = Callable[[Mapping[str, Any], Mapping[str, str]], str]


def render_manifests(
    specs: Sequence[AppSpec],
    config: KubernetesConfig,
    *,
    images: Mapping[str, str],
    revisions: Mapping[str, int],
    services: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, ModelBlob] | None = None,
) -> list[dict[str, Any]]:
    """Every object of ``specs``; every app is checked before any is rendered.

    ``models``: app name -> the registered model it serves, looked up (and in the
    target's artifact root) already.
    """
    for spec in specs:
        check_app(spec, config)
    objects: list[dict[str, Any]] = []
    for spec in specs:
        bound = {
            s: {**spec.service_parameters.get(s, {}), **services.get(s, {})} for s in spec.services
        }
        revision = revisions.get(spec.name, 1)
        blob = (models or {}).get(spec.name)
        work = Workload(spec, revision, images[spec.name], bound, model_lineage(spec, blob), blob)
        objects.extend(render_app(work, config))
    return objects


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Writes a value shared by two objects twice: no ``&id001`` anchors for readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as one YAML stream, keys in the order rendered."""
    text: str = yaml.dump_all(
        [dict(o) for o in objects], Dumper=_Dumper, sort_keys=False, width=100
    )
    return text
