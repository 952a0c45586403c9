"""Streams (create, deploy, update, roll back, undeploy, destroy) and the stream app catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from conveyor.errors import NotFoundError
from conveyor.orchestrate import StreamService
from conveyor.server._common import FileIn, Strict, files_of, operation
from conveyor.server._pages import After, Limit, page
from conveyor.streams.dsl import STREAM_NAME_PATTERN

__all__ = ["routes"]

StreamName = Annotated[str, Path(pattern=STREAM_NAME_PATTERN, description="The stream's name.")]
CatalogueName = Annotated[str, Path(max_length=100, description="A stream app's name.")]


class StreamIn(Strict):
    name: str = Field(pattern=STREAM_NAME_PATTERN)
    definition: str = Field(min_length=1, max_length=20_000)


class StreamDeployIn(Strict):
    properties: dict[str, str] = Field(default_factory=dict)
    binder: str | None = Field(None, max_length=2000)


class StreamAppIn(Strict):
    name: str = Field(min_length=1, max_length=63)
    uri: str = Field(min_length=1, max_length=500)
    files: dict[str, FileIn] | None = None


class StreamRollbackIn(Strict):
    version: int = Field(ge=1)


def routes(streams: StreamService) -> APIRouter:
    api = APIRouter(tags=["streams"])

    @api.get("/v1/streams", summary="Every stream: definition, status, deployed version")
    async def list_streams(
        response: Response, limit: Limit = None, after: After = None
    ) -> list[Mapping[str, Any]]:
        found = streams.list_streams()
        return page(found, limit=limit, after=after, response=response, path="/v1/streams")

    @api.post("/v1/streams/validate", summary="Parse and check a definition; the apps it makes")
    async def validate_stream(body: StreamIn) -> dict[str, Any]:
        return {"name": body.name, "apps": streams.validate(body.name, body.definition)}

    @api.post("/v1/streams", status_code=201, summary="Create a stream (not yet deployed)")
    async def create_stream(body: StreamIn) -> dict[str, Any]:
        return streams.create(body.name, body.definition)

    @api.get("/v1/streams/{name}", summary="A stream with its apps, instances and lag")
    async def stream_info(name: StreamName) -> dict[str, Any]:
        return await asyncio.to_thread(streams.info, name)

    @api.post("/v1/streams/{name}/deploy", summary="Deploy as a new version (JSON lines)")
    async def deploy_stream(name: StreamName, body: StreamDeployIn) -> StreamingResponse:
        _properties(body.properties)
        streams.history(name)  # 404 before the stream of lines starts
        streams.check_binder(body.binder)
        return operation(
            lambda progress: streams.deploy(name, body.properties, body.binder, progress)
        )

    @api.post("/v1/streams/{name}/update", summary="Redeploy with changed properties (lines)")
    async def update_stream(name: StreamName, body: StreamDeployIn) -> StreamingResponse:
        _properties(body.properties)
        streams.history(name)
        return operation(lambda progress: streams.update(name, body.properties, progress))

    @api.post("/v1/streams/{name}/rollback", summary="Redeploy a former version (JSON lines)")
    async def rollback_stream(name: StreamName, body: StreamRollbackIn) -> StreamingResponse:
        streams.history(name)
        return operation(lambda progress: streams.rollback(name, body.version, progress))

    @api.post("/v1/streams/{name}/undeploy", summary="Stop and remove the stream's apps")
    async def undeploy_stream(name: StreamName) -> dict[str, Any]:
        return await streams.undeploy(name)

    @api.delete("/v1/streams/{name}", summary="Undeploy and forget the stream")
    async def destroy_stream(name: StreamName) -> dict[str, Any]:
        return await streams.destroy(name)

    @api.get("/v1/streams/{name}/history", summary="Every deployment of the stream")
    async def stream_history(name: StreamName) -> list[dict[str, Any]]:
        return streams.history(name)

    # -- the stream app catalogue --------------------------------------------

    @api.get("/v1/stream-apps", summary="The apps streams are made of: name, role, description")
    async def list_stream_apps() -> list[dict[str, Any]]:
        from conveyor.streams.catalogue import CATALOGUE

        built_in = [
            {"name": a.name, "role": a.role.value, "description": a.description}
            for a in sorted(CATALOGUE.values(), key=lambda a: (a.role.value, a.name))
        ]
        users = [
            {"name": n, "role": "processor", "description": f"user app: {uri}"}
            for n, uri in sorted(streams.registered().items())
        ]
        return built_in + users

    @api.post("/v1/stream-apps", status_code=201, summary="Register a user app (python:m:f)")
    async def register_stream_app(body: StreamAppIn) -> dict[str, Any]:
        return await streams.register(body.name, body.uri, files_of(body.files))

    @api.delete("/v1/stream-apps/{app}", summary="Forget a user app")
    async def unregister_stream_app(app: CatalogueName) -> dict[str, str]:
        streams.unregister(app)
        return {"unregistered": app}

    @api.get("/v1/stream-apps/{app}", summary="One app's roles and options")
    async def stream_app_info(app: CatalogueName) -> list[dict[str, Any]]:
        uri = streams.registered().get(app)
        if uri is not None:
            return [_user_app(app, uri)]
        return _built_in_app(app)

    return api


def _user_app(name: str, uri: str) -> dict[str, Any]:
    """A registered function, as the catalogue shows it: the python processor calling it."""
    return {
        "name": name,
        "role": "processor",
        "description": f"user app: {uri} (the python processor calling it)",
        "options": [
            {
                "name": "batch",
                "type": "bool",
                "default": False,
                "required": False,
                "choices": [],
                "description": "call the function once per batch with a list",
            }
        ],
    }


def _built_in_app(name: str) -> list[dict[str, Any]]:
    """Every role a built-in app plays (``file`` is a source and a sink), with its options."""
    from conveyor.streams.catalogue import CATALOGUE

    found = [a for a in CATALOGUE.values() if a.name == name]
    if not found:
        known = ", ".join(sorted({a.name for a in CATALOGUE.values()}))
        raise NotFoundError(f"there is no stream app named {name!r}; the apps: {known}")
    return [
        {
            "name": a.name,
            "role": a.role.value,
            "description": a.description,
            "options": [
                {
                    "name": o.name,
                    "type": o.type,
                    "default": o.default,
                    "required": o.required,
                    "choices": list(o.choices),
                    "description": o.description,
                }
                for o in a.options
            ],
        }
        for a in found
    ]


def _properties(properties: Mapping[str, str]) -> None:
    from conveyor.streams.plan import parse_properties

    parse_properties(",".join(f"{k}={v}" for k, v in properties.items()))
