"""The model registry over HTTP: ``/v1/models`` (versions, aliases, tags, description).

Registering takes a run's model (``{"source": "run:<id>/<model>"}``) or a
blob already uploaded with ``PUT /v1/blobs/{digest}`` (``{"file": {"name",
"digest"}}``); the same artifact registered again answers 200 with the version
it has, a new one 201.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import Field

from conveyor.errors import ModelError, NotFoundError, UsageError
from conveyor.platform.controller import Controller
from conveyor.repro.registered import move_alias, register_run_model
from conveyor.server._common import DIGEST, Strict
from conveyor.server._pages import After, Limit, page
from conveyor.store.models import ModelRepository, ModelVersion

__all__ = ["routes"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ModelName = Annotated[str, Path(pattern=_NAME, description="The registered model's name.")]
AliasName = Annotated[str, Path(pattern=_NAME, description="The alias (e.g. champion).")]


class UploadedIn(Strict):
    name: str = Field(min_length=1, max_length=250, description="The file's name (its suffix).")
    digest: str = Field(pattern=DIGEST)


class RegisterIn(Strict):
    source: str | None = Field(None, description="run:<run-id>/<model>")
    file: UploadedIn | None = None
    description: str | None = Field(None, max_length=10_000)


class AliasIn(Strict):
    version: int = Field(ge=1)
    force: bool = False


class ModelPatch(Strict):
    description: str | None = Field(None, max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)
    remove_tags: list[str] = Field(default_factory=list)


def routes(controller: Controller) -> APIRouter:
    api = APIRouter(tags=["models"])
    registry = controller.state.registry
    repo = ModelRepository(registry)

    def _register(name: str, body: RegisterIn) -> tuple[ModelVersion, bool]:
        if (body.source is None) == (body.file is None):
            raise UsageError("give either 'source' (run:<run-id>/<model>) or 'file', not both")
        if body.source is not None:
            return register_run_model(registry, body.source, name, description=body.description)
        assert body.file is not None
        from conveyor.models import format_for

        if not controller.artifacts.exists(body.file.digest):
            raise NotFoundError(
                f"no uploaded blob {body.file.digest}",
                hint="Upload the file first with PUT /v1/blobs/{digest}.",
            )
        try:
            fmt = format_for(pathlib.Path(PurePosixPath(body.file.name).name))
        except ModelError as exc:
            raise UsageError(f"file {body.file.name!r}: {exc.message}", hint=exc.hint) from None
        return repo.add_version(
            name,
            digest=body.file.digest,
            format=fmt.name,
            signature=None,
            run_id=None,
            source=f"file:{PurePosixPath(body.file.name).name}",
            filename=body.file.name,
            description=body.description,
        )

    @api.get("/v1/models", summary="Registered models with their latest version and aliases")
    async def list_models(
        response: Response, limit: Limit = None, after: After = None
    ) -> list[Mapping[str, Any]]:
        models = [m.to_json() for m in await asyncio.to_thread(repo.models)]
        return page(models, limit=limit, after=after, response=response, path="/v1/models")

    @api.get("/v1/models/{name}", summary="One model with its versions")
    async def show_model(name: ModelName) -> dict[str, Any]:
        model = await asyncio.to_thread(repo.model, name)
        versions = await asyncio.to_thread(repo.versions, name)
        return {**model.to_json(), "versions": [v.to_json() for v in versions]}

    @api.patch("/v1/models/{name}", summary="Change a model's description or tags")
    async def patch_model(name: ModelName, body: ModelPatch) -> dict[str, Any]:
        model = await asyncio.to_thread(
            repo.update_model,
            name,
            description=body.description,
            set_tags=body.tags,
            remove_tags=tuple(body.remove_tags),
        )
        return model.to_json()

    @api.get("/v1/models/{name}/versions", summary="Every version of a model, oldest first")
    async def list_versions(name: ModelName) -> list[dict[str, Any]]:
        return [v.to_json() for v in await asyncio.to_thread(repo.versions, name)]

    @api.post(
        "/v1/models/{name}/versions",
        status_code=201,
        summary="Register a run's model or an uploaded file as a new version",
    )
    async def register(name: ModelName, body: RegisterIn, response: Response) -> dict[str, Any]:
        version, created = await asyncio.to_thread(_register, name, body)
        if not created:
            response.status_code = 200
        return {**version.to_json(), "created": created}

    @api.get("/v1/models/{name}/versions/{version}", summary="One version")
    async def show_version(name: ModelName, version: int) -> dict[str, Any]:
        return (await asyncio.to_thread(repo.version, name, version)).to_json()

    @api.get("/v1/models/{name}/aliases/{alias}", summary="The version an alias points at")
    async def show_alias(name: ModelName, alias: AliasName) -> dict[str, Any]:
        return (await asyncio.to_thread(repo.resolve, name, alias=alias)).to_json()

    @api.put(
        "/v1/models/{name}/aliases/{alias}",
        summary="Point an alias at a version (refused if the signature differs, unless forced)",
    )
    async def put_alias(name: ModelName, alias: AliasName, body: AliasIn) -> dict[str, Any]:
        before = await asyncio.to_thread(
            move_alias, registry, name, alias, body.version, force=body.force
        )
        return {"model": name, "alias": alias, "version": body.version, "previous": before}

    @api.delete("/v1/models/{name}/aliases/{alias}", summary="Remove an alias")
    async def delete_alias(name: ModelName, alias: AliasName) -> dict[str, str]:
        await asyncio.to_thread(repo.delete_alias, name, alias)
        return {"deleted": alias}

    return api
