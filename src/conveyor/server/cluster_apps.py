"""Apps on a Kubernetes target: push, list, show, scale, logs, set-env, restart, rollback,
events and delete, by target name.

The cluster keeps their state (the objects and their labels); the platform
only stages the droplet and asks the image builder for its image. Every call
to the cluster runs in a worker thread: the official client blocks.

Changes to one app on one target run one at a time (:func:`change_lock`): a
push, a set-env, a restart, a rollback, a scale, a delete and the alias
follower's roll each read the live Deployment and make the next revision, so
two at once would make the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path as PathType
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import Field

from conveyor.errors import UsageError
from conveyor.platform.controller import Controller
from conveyor.platform.kubernetes.changes import revision_row
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.models import ArtifactRoots, publish_model
from conveyor.platform.kubernetes.render import check_app, model_lineage, stored_model
from conveyor.platform.kubernetes.target import (
    KIND_LABEL,
    RUNTIME_KINDS,
    ImageBuilder,
    KubernetesTarget,
    RuntimeBuilder,
)
from conveyor.platform.spec import MAX_INSTANCES, AppSpec
from conveyor.repro.registered import ModelBlob
from conveyor.server._common import (
    APP_NAME,
    AppName,
    Progress,
    Strict,
    files_of,
    from_thread,
    ndjson,
    operation,
)
from conveyor.server.apps import EnvIn, PushIn
from conveyor.store.targets import LOCAL, TargetRepository

__all__ = [
    "IMAGE_PATTERN",
    "BuilderFactory",
    "change_lock",
    "change_locks",
    "cluster_target",
    "image_builders",
    "published",
    "routes",
]

TargetName = Annotated[str, Path(pattern=APP_NAME, description="A Kubernetes target's name.")]
IMAGE_PATTERN = r"^[a-z0-9.:/_-]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]{1,128})$"


class BuilderFactory(Protocol):
    """Makes a Kubernetes target's image builders (into its registry)."""

    def __call__(self, config: KubernetesConfig) -> ImageBuilder:
        """The builder of apps' images from their droplets."""

    def runtime(self, config: KubernetesConfig) -> RuntimeBuilder:
        """The builder of the runtime image (this server's Conveyor on the target's base)."""


def image_builders(cache: PathType) -> BuilderFactory:
    """The platform's OCI builders for each target: apps' images go to ``<registry>/<app>``,
    the runtime image to ``<registry>/conveyor-runtime``.

    ``cache`` keeps dependency and runtime layers between builds (``conveyor droplets gc``
    trims it).
    """
    return _OciBuilders(cache)


class _OciBuilders:
    def __init__(self, cache: PathType) -> None:
        self.cache = cache

    def runtime(self, config: KubernetesConfig) -> RuntimeBuilder:
        def build() -> str:
            from conveyor.platform.images.reference import is_loopback
            from conveyor.platform.images.runtime import build_runtime

            image = build_runtime(
                config.registry,
                base=config.base_image,
                insecure=is_loopback(config.registry.split("/", 1)[0]),
                cache=self.cache,
            )
            return image.pinned

        return build

    def __call__(self, config: KubernetesConfig) -> ImageBuilder:
        def build(droplet: Mapping[str, Any], labels: Mapping[str, str]) -> str:
            from conveyor.platform.images import build_and_push, revision_droplet
            from conveyor.platform.images.reference import is_loopback
            from conveyor.platform.images.runtime import check_app

            app = labels["app.kubernetes.io/name"]
            repository = f"{config.registry.rstrip('/')}/{app}"
            base = config.base_image
            source = revision_droplet(droplet)
            if labels.get(KIND_LABEL) in RUNTIME_KINDS:  # it runs Conveyor (`conveyor serve`)
                if config.runtime_image is None:
                    check_app(source)  # a clash is refused before the runtime image is pushed
                base = config.runtime_image or self.runtime(config)()
            image = build_and_push(
                source,
                repository=repository,
                base=base,
                labels=labels,
                insecure=is_loopback(repository.split("/", 1)[0]),
                cache=self.cache,
            )
            return image.pinned

        return build


async def published(
    controller: Controller,
    roots: ArtifactRoots,
    spec: AppSpec,
    config: KubernetesConfig,
    progress: Progress,
) -> ModelBlob | None:
    """The registered model a model app serves, in the target's artifact root (uploaded
    there if need be); None for any other app. Refused first if the target has no root."""
    if not stored_model(spec):
        return None
    check_app(spec, config)
    return await asyncio.to_thread(
        publish_model,
        str(spec.model),
        controller.state.registry,
        controller.artifacts,
        roots(config),
        from_thread(progress),
    )


def cluster_target(
    registry: TargetRepository, name: str, builders: BuilderFactory | None
) -> KubernetesTarget:
    """The Kubernetes target named ``name`` (it connects on first use)."""
    if name == LOCAL:
        raise UsageError("use the commands without --target for the local target")
    config = KubernetesConfig.from_json(registry.get(name)["config"])
    if builders is None:
        return KubernetesTarget(config, builder=None)
    return KubernetesTarget(config, builder=builders(config), runtime=builders.runtime(config))


def change_lock(controller: Controller, target: str, app: str) -> asyncio.Lock:
    """The lock a change to ``app`` on ``target`` holds to its end, as the local controller
    locks an app (its locks; a name with a slash is no local app's)."""
    return controller.lock(f"{target}/{app}")


@contextlib.asynccontextmanager
async def _one_at_a_time(lock: asyncio.Lock, progress: Progress, app: str) -> AsyncIterator[None]:
    """Hold ``lock``, saying so first when another change holds it."""
    if lock.locked():
        progress(f"waiting for the change to {app} in progress to end")
    async with lock:
        yield


@contextlib.asynccontextmanager
async def change_locks(
    controller: Controller, target: str, apps: Iterable[str], progress: Progress
) -> AsyncIterator[None]:
    """Hold the :func:`change_lock` of every app in ``apps`` (a stream's), taken in name
    order: two changes to overlapping sets of apps then never wait for each other."""
    async with contextlib.AsyncExitStack() as held:
        for app in sorted(set(apps)):
            await held.enter_async_context(
                _one_at_a_time(change_lock(controller, target, app), progress, app)
            )
        yield


class ClusterPushIn(PushIn):
    #: An image built elsewhere, pinned by digest: nothing is staged or built then.
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)


class ClusterScaleIn(Strict):
    instances: int = Field(ge=0, le=MAX_INSTANCES)


class ClusterRollbackIn(Strict):
    #: The kept revision to run again; None: the one before the running one.
    revision: int | None = Field(None, ge=1)


def routes(
    controller: Controller, builders: BuilderFactory | None, roots: ArtifactRoots
) -> APIRouter:
    api = APIRouter(tags=["targets"])
    registry = TargetRepository(controller.state.registry)

    def target(name: str) -> KubernetesTarget:
        return cluster_target(registry, name, builders)

    def one_at_a_time(
        target_name: str, app: str, progress: Progress
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return _one_at_a_time(change_lock(controller, target_name, app), progress, app)

    async def io(call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    @api.post(
        "/v1/targets/{target_name}/apps/{name}/push",
        summary="Build the image, apply and wait for the rollout (JSON lines)",
    )
    async def push(
        target_name: TargetName, name: AppName, body: ClusterPushIn
    ) -> StreamingResponse:
        if body.spec.name != name:
            raise UsageError(f"the spec is for app {body.spec.name!r}, not {name!r}")
        cluster = target(target_name)
        spec = dataclasses.replace(body.spec, instances=body.instances)
        check_app(spec, cluster.config)  # refused as a 4xx, before the operation streams

        async def work(progress: Progress) -> dict[str, Any]:
            async with one_at_a_time(target_name, name, progress):
                return await pushed(progress)

        async def pushed(progress: Progress) -> dict[str, Any]:
            revision = await io(cluster.next_revision, name)
            # As locally: variables set with set-env outlive a push; the manifest's win.
            app = dataclasses.replace(spec, env={**await io(cluster.variables, name), **spec.env})
            droplet: dict[str, Any] = {}
            image = body.image
            blob = await published(controller, roots, spec, cluster.config, progress)
            if blob is not None:  # pods fetch the model: the runtime image alone serves it
                image = image or await cluster.runtime_image()
            elif image is None:
                droplet = dict(await controller.stage(spec, files_of(body.files), progress) or {})
            objects = await cluster.push(
                app,
                revision=revision,
                droplet=droplet,
                progress=progress,
                services=controller.state.services(),
                lineage=model_lineage(spec, blob),
                image=image,
                model=blob,
            )
            return {
                "revision": revision,
                "instances": spec.instances,
                "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects],
            }

        return operation(work)

    @api.get("/v1/targets/{target_name}/apps", summary="The apps Conveyor manages on a target")
    async def list_apps(target_name: TargetName) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await io(target(target_name).apps)
        return rows

    @api.get("/v1/targets/{target_name}/apps/{name}", summary="One app's pods on a target")
    async def get_app(target_name: TargetName, name: AppName) -> dict[str, Any]:
        return {"name": name, "pods": await io(target(target_name).status, name)}

    @api.post("/v1/targets/{target_name}/apps/{name}/scale", summary="Change the replicas")
    async def scale(target_name: TargetName, name: AppName, body: ClusterScaleIn) -> dict[str, Any]:
        async with change_lock(controller, target_name, name):
            await target(target_name).scale(name, body.instances)
        return {"name": name, "instances": body.instances}

    @api.get(
        "/v1/targets/{target_name}/apps/{name}/logs",
        summary="Every pod's last lines; with follow, JSON lines as they come",
        response_model=None,
    )
    async def logs(
        target_name: TargetName,
        name: AppName,
        lines: Annotated[int, Query(ge=1, le=10_000)] = 100,
        follow: bool = False,
    ) -> dict[str, Any] | StreamingResponse:
        cluster = target(target_name)
        if follow:

            async def stream() -> AsyncIterator[bytes]:
                async for pod, text in cluster.follow(name, lines=lines):
                    yield ndjson({"pod": pod, "text": text})

            return StreamingResponse(stream(), media_type="application/x-ndjson")
        found = await io(lambda: cluster.logs(name, lines=lines))
        return {"lines": found}

    def rolled(
        target_name: str,
        name: str,
        change: Callable[[KubernetesTarget, Progress], Awaitable[dict[str, Any]]],
    ) -> StreamingResponse:
        """A change to a running app on the target, its rollout streamed as JSON lines."""
        cluster = target(target_name)

        async def work(progress: Progress) -> dict[str, Any]:
            async with one_at_a_time(target_name, name, progress):
                return await change(cluster, progress)

        return operation(work)

    @api.post(
        "/v1/targets/{target_name}/apps/{name}/env",
        summary="Set or unset variables: a new revision, rolled out (JSON lines)",
    )
    async def set_env(target_name: TargetName, name: AppName, body: EnvIn) -> StreamingResponse:
        async def change(cluster: KubernetesTarget, progress: Progress) -> dict[str, Any]:
            revision = await cluster.set_env(name, body.set, body.unset, progress)
            return {"revision": revision, "message": f"revision {revision} rolled out"}

        return rolled(target_name, name, change)

    @api.post(
        "/v1/targets/{target_name}/apps/{name}/restart",
        summary="Replace every pod, rolling (JSON lines)",
    )
    async def restart(target_name: TargetName, name: AppName) -> StreamingResponse:
        async def change(cluster: KubernetesTarget, progress: Progress) -> dict[str, Any]:
            revision = await cluster.restart(name, progress)
            return {"revision": revision, "message": f"revision {revision} restarted"}

        return rolled(target_name, name, change)

    @api.post(
        "/v1/targets/{target_name}/apps/{name}/rollback",
        summary="Run a kept revision again as a new one, rolled out (JSON lines)",
    )
    async def rollback(
        target_name: TargetName, name: AppName, body: ClusterRollbackIn
    ) -> StreamingResponse:
        async def change(cluster: KubernetesTarget, progress: Progress) -> dict[str, Any]:
            revision, ran = await cluster.rollback(name, body.revision, progress)
            message = f"revision {revision} (revision {ran} again) rolled out"
            return {"revision": revision, "from": ran, "message": message}

        return rolled(target_name, name, change)

    @api.get(
        "/v1/targets/{target_name}/apps/{name}/revisions",
        summary="The revisions the cluster keeps (its ReplicaSets), newest first",
    )
    async def revisions(target_name: TargetName, name: AppName) -> list[dict[str, Any]]:
        cluster = target(target_name)
        live, kept = await io(lambda: (cluster.revision(name), cluster.revisions(name)))
        return [revision_row(n, template, deployed=n == live) for n, template in kept.items()]

    @api.get("/v1/targets/{target_name}/apps/{name}/events", summary="The app's cluster events")
    async def events(
        target_name: TargetName,
        name: AppName,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await io(target(target_name).events, name)
        return found[-limit:]

    @api.delete("/v1/targets/{target_name}/apps/{name}", summary="Delete every object of an app")
    async def delete(target_name: TargetName, name: AppName) -> dict[str, Any]:
        async with change_lock(controller, target_name, name):
            return {"deleted": name, "kinds": await target(target_name).undeploy(name)}

    return api
