"""Deployment targets: the built-in ``local`` one and the Kubernetes clusters added to it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field

from conveyor.errors import UsageError
from conveyor.platform.controller import Controller
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.models import ArtifactRoots
from conveyor.platform.kubernetes.render import check_app
from conveyor.platform.spec import AppSpec
from conveyor.server._common import APP_NAME, Strict
from conveyor.server.cluster_apps import published
from conveyor.store.targets import LOCAL, TargetRepository

__all__ = ["routes"]

TargetName = Annotated[str, Path(pattern=APP_NAME, description="The target's name.")]


class KubernetesIn(Strict):
    context: str | None = Field(None, min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=63)
    registry: str = Field(min_length=1, max_length=255)
    artifact_root: str | None = Field(None, min_length=1, max_length=1024)
    artifact_secret: str | None = Field(None, min_length=1, max_length=253)
    routing: Literal["ingress", "gateway"] = "ingress"
    ingress_class: str | None = Field(None, min_length=1, max_length=253)
    gateway: str | None = Field(None, min_length=1, max_length=253)
    base_image: str | None = Field(None, min_length=1, max_length=512)
    runtime_image: str | None = Field(None, min_length=1, max_length=512)


class TargetIn(Strict):
    name: str = Field(pattern=APP_NAME)
    kind: Literal["kubernetes"] = "kubernetes"
    config: KubernetesIn
    replace: bool = False


class RenderIn(Strict):
    specs: list[AppSpec] = Field(min_length=1, max_length=100)
    #: App name -> the image to run; an app left out gets ``REGISTRY/APP:latest``.
    images: dict[str, str] = Field(default_factory=dict)
    #: The revision label and annotation (a push numbers them from the cluster's).
    revision: int = Field(1, ge=1)


def _local() -> dict[str, Any]:
    return {"name": LOCAL, "kind": "local", "config": {}, "created_at": None}


def routes(controller: Controller, roots: ArtifactRoots) -> APIRouter:
    api = APIRouter(tags=["targets"])
    targets = TargetRepository(controller.state.registry)

    @api.get("/v1/targets", summary="Where apps can be deployed: local, then the added ones")
    async def list_targets() -> list[dict[str, Any]]:
        return [_local(), *targets.all()]

    @api.get("/v1/targets/{name}", summary="One target and its settings")
    async def get_target(name: TargetName) -> dict[str, Any]:
        return _local() if name == LOCAL else targets.get(name)

    @api.post("/v1/targets", status_code=201, summary="Add a Kubernetes target")
    async def add_target(body: TargetIn) -> dict[str, Any]:
        config = KubernetesConfig(**body.config.model_dump())  # its own checks: UsageError
        created = targets.add(body.name, body.kind, config.to_json(), replace=body.replace)
        return {"name": body.name, "created": created}

    @api.delete("/v1/targets/{name}", summary="Remove a target (nothing on it is touched)")
    async def remove_target(name: TargetName) -> dict[str, str]:
        targets.remove(name)
        return {"removed": name}

    @api.post("/v1/targets/{name}/render", summary="The Kubernetes objects of some apps")
    async def render(name: TargetName, body: RenderIn) -> dict[str, Any]:
        from conveyor.platform.kubernetes import render_manifests

        if name == LOCAL:
            raise UsageError("the local target runs processes; there is nothing to render")
        config = KubernetesConfig.from_json(targets.get(name)["config"])
        for spec in body.specs:
            check_app(spec, config)  # every app refused before any model is uploaded
        models = {}
        for spec in body.specs:
            # The manifests name the model's blob: the artifact root must hold it.
            blob = await published(controller, roots, spec, config, lambda _message: None)
            if blob is not None:
                models[spec.name] = blob
        images = {
            s.name: body.images.get(s.name)
            or (models.get(s.name) and config.runtime_image)
            or f"{config.registry}/{s.name}:latest"
            for s in body.specs
        }
        objects = render_manifests(
            body.specs,
            config,
            images=images,
            revisions={s.name: body.revision for s in body.specs},
            services=controller.state.services(),
            models=models,
        )
        return {"objects": objects}

    return api
