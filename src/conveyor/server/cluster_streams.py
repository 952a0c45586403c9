"""Streams on a Kubernetes target: their apps rendered, or deployed as one Deployment each."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from conveyor.errors import NotFoundError
from conveyor.orchestrate import StreamService
from conveyor.orchestrate.cluster_streams import (
    check_scored_models,
    cluster_stream_specs,
    scored_models,
)
from conveyor.platform.kubernetes.models import ArtifactRoots, publish_model
from conveyor.platform.kubernetes.render import Workload, model_lineage, render_app
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.repro.registered import ModelBlob
from conveyor.server._common import Progress, Strict, from_thread, operation
from conveyor.server.cluster_apps import (
    IMAGE_PATTERN,
    BuilderFactory,
    TargetName,
    change_locks,
    cluster_target,
)
from conveyor.server.streams import StreamName
from conveyor.store.targets import TargetRepository

__all__ = ["routes"]


class ClusterStreamIn(Strict):
    properties: dict[str, str] = Field(default_factory=dict)
    binder: str | None = Field(None, max_length=2000)
    #: An image with Conveyor installed (every stream app runs Conveyor's stream runtime);
    #: None: the target's runtime image.
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)


def routes(
    streams: StreamService, builders: BuilderFactory | None, roots: ArtifactRoots
) -> APIRouter:
    api = APIRouter(tags=["targets"])
    controller = streams.controller
    registry = TargetRepository(controller.state.registry)

    def specs(target_name: str, name: str, body: ClusterStreamIn) -> tuple[Any, list[Any]]:
        target = cluster_target(registry, target_name, builders)
        apps = cluster_stream_specs(streams, name, body.binder, body.properties)
        # A registered model on a target without an artifact root: a 4xx, nothing sent.
        check_scored_models(name, apps, target.config.artifact_root)
        return target, apps

    async def models(
        target: KubernetesTarget, apps: list[Any], progress: Progress
    ) -> list[tuple[Any, Any]]:
        """Score apps' registered models, published to the target's artifact root."""
        tell = from_thread(progress)

        def publish(uri: str) -> ModelBlob:
            root = roots(target.config)
            return publish_model(uri, controller.state.registry, controller.artifacts, root, tell)

        return await asyncio.to_thread(scored_models, apps, publish)

    @api.post("/v1/targets/{target_name}/streams/{name}/render", summary="A stream's objects")
    async def render(target_name: TargetName, name: StreamName, body: ClusterStreamIn) -> Any:
        target, apps = specs(target_name, name, body)
        image = (
            body.image
            or target.config.runtime_image
            or f"{target.config.registry}/conveyor-runtime:latest"
        )
        objects = [
            o
            for spec, blob in await models(target, apps, lambda _message: None)
            for o in render_app(
                Workload(spec, 1, image, lineage=model_lineage(spec, blob), model=blob),
                target.config,
            )
        ]
        return {"objects": objects}

    @api.post(
        "/v1/targets/{target_name}/streams/{name}/deploy",
        summary="Deploy a stream's apps to a target, all or none (JSON lines)",
    )
    async def deploy(
        target_name: TargetName, name: StreamName, body: ClusterStreamIn
    ) -> StreamingResponse:
        target, apps = specs(target_name, name, body)

        async def work(progress: Progress) -> dict[str, Any]:
            image = body.image
            if image is None:  # every stream app runs Conveyor's stream runtime
                progress("the runtime image: found, or built from this server's Conveyor")
                image = await target.runtime_image()
                progress(f"runtime image {image}")
            works = []
            published = await models(target, apps, progress)
            # Each revision is read from the live Deployment: no other change to the app
            # (a push, a set-env, another deploy) may make the same one before the apply.
            async with change_locks(
                controller, target_name, [s.name for s, _ in published], progress
            ):
                for spec, blob in published:
                    revision = await asyncio.to_thread(target.next_revision, spec.name)
                    marks = model_lineage(spec, blob)
                    works.append(Workload(spec, revision, image, lineage=marks, model=blob))
                    progress(f"{spec.name}: revision {revision}, {spec.instances} replica(s)")
                await target.deploy(works, progress)
            return {"apps": [w.spec.name for w in works]}

        return operation(work)

    @api.get("/v1/targets/{target_name}/streams/{name}", summary="A stream's apps on a target")
    async def info(target_name: TargetName, name: StreamName) -> dict[str, Any]:
        target = cluster_target(registry, target_name, builders)
        rows = await asyncio.to_thread(target.apps, name)
        if not rows:
            raise NotFoundError(
                f"stream {name!r} is not deployed on target {target_name!r} "
                f"(namespace {target.config.namespace!r})"
            )
        return {"name": name, "target": target_name, "apps": rows}

    @api.delete("/v1/targets/{target_name}/streams/{name}", summary="Remove a stream's apps")
    async def undeploy(target_name: TargetName, name: StreamName) -> dict[str, Any]:
        target = cluster_target(registry, target_name, builders)
        rows = await asyncio.to_thread(target.apps, name)
        if not rows:
            raise NotFoundError(f"stream {name!r} is not deployed on target {target_name!r}")
        names = [row["name"] for row in rows]
        async with change_locks(controller, target_name, names, lambda _message: None):
            for app in names:
                await target.undeploy(app)
        return {"name": name, "removed": [row["name"] for row in rows]}

    return api
