"""Images: an app's current revision, or the runtime image (this server's Conveyor), built into
an OCI image and pushed to a registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from conveyor.errors import UsageError
from conveyor.platform.controller import Controller
from conveyor.server._common import AppName, Strict, from_thread, operation

__all__ = ["routes"]


class ImageIn(Strict):
    #: A repository prefix: the image goes to ``<registry>/<app>``.
    registry: str = Field(min_length=1, max_length=255)
    #: The base image; default: the official slim Python image of the droplet's Python.
    base: str | None = Field(None, max_length=512)
    tag: str | None = Field(None, max_length=128)
    #: Plain HTTP (always so for a registry on a loopback address).
    insecure: bool = False


class RuntimeIn(Strict):
    #: A repository prefix: the image goes to ``<registry>/conveyor-runtime``.
    registry: str = Field(min_length=1, max_length=255)
    #: The base image; default: the official slim Python image of this server's Python.
    base: str | None = Field(None, max_length=512)
    #: Conveyor's extras whose packages go in; None: the runtime's (serving, S3, brokers).
    extras: list[Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]] | None = Field(
        None, max_length=40
    )
    insecure: bool = False


def routes(controller: Controller) -> APIRouter:
    api = APIRouter(tags=["images"])

    @api.post("/v1/apps/{name}/image", summary="Build the running revision's image, push it")
    async def build(name: AppName, body: ImageIn) -> StreamingResponse:
        from conveyor.platform.images import LABEL_APP, LABEL_REVISION, revision_droplet
        from conveyor.platform.images.reference import is_loopback

        app = controller.state.app(name)
        revision = controller.state.revision(name, app.revision)
        spec = controller.spec(revision)
        if spec.kind != "command":
            raise UsageError(
                f"app {name!r} is a {spec.kind} app; only command apps are built into images",
                hint="A model or stream app runs Conveyor itself: push it with --target, which "
                "builds it on the runtime image (`conveyor image runtime`).",
            )
        droplet = revision_droplet(revision.droplet)
        repository = f"{body.registry.rstrip('/')}/{name}"
        insecure = body.insecure or is_loopback(repository.split("/", 1)[0])
        labels = {LABEL_APP: name, LABEL_REVISION: str(revision.number)}

        async def work(progress: Callable[[str], None]) -> dict[str, Any]:
            from conveyor.platform.images import build_and_push

            image = await asyncio.to_thread(
                build_and_push,
                droplet,
                repository=repository,
                base=body.base,
                labels=labels,
                insecure=insecure,
                progress=from_thread(progress),
                command=spec.command,
                tag=body.tag,
                cache=controller.dir / "image-layers",
            )
            return {"repository": image.repository, "digest": image.digest, "pinned": image.pinned}

        return operation(work)

    @api.post("/v1/images/runtime", summary="Build the runtime image (this server's Conveyor)")
    async def runtime(body: RuntimeIn) -> StreamingResponse:
        from conveyor.platform.images.push import push_target
        from conveyor.platform.images.reference import is_loopback
        from conveyor.platform.images.runtime import (
            RUNTIME_EXTRAS,
            RUNTIME_REPOSITORY,
            check_extras,
        )

        insecure = body.insecure or is_loopback(body.registry.split("/", 1)[0])
        extras = RUNTIME_EXTRAS if body.extras is None else tuple(body.extras)
        check_extras(extras)  # refused before the operation starts: a 4xx
        repository = push_target(f"{body.registry.rstrip('/')}/{RUNTIME_REPOSITORY}").name

        async def work(progress: Callable[[str], None]) -> dict[str, Any]:
            from conveyor.platform.images.runtime import build_runtime

            image = await asyncio.to_thread(
                build_runtime,
                body.registry,
                base=body.base,
                extras=extras,
                insecure=insecure,
                progress=from_thread(progress),
                cache=controller.dir / "image-layers",
            )
            return {"repository": repository, "digest": image.digest, "pinned": image.pinned}

        return operation(work)

    return api
