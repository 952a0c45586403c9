"""The control API: a FastAPI app over one :class:`~conveyor.platform.controller.Controller`.

Thin by design: it checks the token, validates the request body (pydantic),
calls the controller and turns errors into JSON ``{"error", "hint"}`` bodies
with a 4xx status. Operations that take a while (push, restart, rollback,
restage, start) answer with a stream of JSON lines: ``{"progress": ...}`` as
they go, then one ``{"result": ...}`` or ``{"error": ...}``.

Every request, the OpenAPI document included, needs ``Authorization: Bearer
<token>``; the token is a file only the platform's user can read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import ConveyorError, NotFoundError, UsageError
from conveyor.platform import views
from conveyor.platform.controller import Controller, Deployment, Progress
from conveyor.platform.errors import ManifestError, StagingError
from conveyor.platform.kinds import Files, kind_named
from conveyor.platform.spec import ENV_KEY, MAX_INSTANCES, AppSpec
from conveyor.store.digests import new_hasher

__all__ = ["create_app"]

log = logging.getLogger("conveyor.server.api")

_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
_SERVICE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_DIGEST = r"^blake3:[0-9a-f]{64}$"
#: Largest single uploaded file.
MAX_BLOB = 1024 * 1024 * 1024

AppName = Annotated[str, Path(pattern=_NAME, description="The app's name.")]
StreamName = Annotated[
    str, Path(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?$", description="The stream's name.")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileIn(_Strict):
    digest: str = Field(pattern=_DIGEST)
    mode: int = Field(0o644, ge=0, le=0o7777)


class PushIn(_Strict):
    #: Validated against the platform's own dataclasses: one spec from manifest to revision.
    spec: AppSpec
    files: dict[str, FileIn] | None = None
    instances: int = Field(1, ge=0, le=MAX_INSTANCES)


class ScaleIn(_Strict):
    instances: int = Field(ge=0, le=MAX_INSTANCES)


class EnvIn(_Strict):
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class RollbackIn(_Strict):
    revision: int = Field(ge=1)


class MissingIn(_Strict):
    digests: list[Annotated[str, Field(pattern=_DIGEST)]] = Field(max_length=100_000)


class StreamIn(_Strict):
    name: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?$")
    definition: str = Field(min_length=1, max_length=20_000)


class StreamDeployIn(_Strict):
    properties: dict[str, str] = Field(default_factory=dict)
    binder: str | None = Field(None, max_length=2000)


class StreamAppIn(_Strict):
    name: str = Field(min_length=1, max_length=63)
    uri: str = Field(min_length=1, max_length=500)
    files: dict[str, FileIn] | None = None


class StreamRollbackIn(_Strict):
    version: int = Field(ge=1)


class ServiceIn(_Strict):
    name: str = Field(pattern=_SERVICE)
    credentials: dict[str, Any]


def _status(error: ConveyorError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, (UsageError, ManifestError)) or error.exit_code == 2:
        return 400
    if isinstance(error, StagingError):
        return 422
    return 409


def _error_body(error: ConveyorError) -> dict[str, Any]:
    return {"error": error.message, "hint": error.hint}


class _TokenGuard:
    """Pure ASGI: every HTTP request must carry the bearer token (streams stay untouched)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                body = orjson.dumps(
                    {
                        "error": "missing or wrong API token",
                        "hint": "The CLI reads it from <CONVEYOR_HOME>/platform/token; "
                        "send it as 'Authorization: Bearer <token>'.",
                    }
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


#: Operations still running, whether or not their client is still listening.
_RUNNING: set[asyncio.Task[None]] = set()


def _ndjson(item: Mapping[str, Any]) -> bytes:
    return orjson.dumps(item) + b"\n"


def _operation(
    work: Callable[[Progress], Awaitable[Deployment | dict[str, Any]]],
) -> StreamingResponse:
    """Run ``work`` to the end even if the client leaves; stream its progress and result."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            done = await work(lambda message: queue.put_nowait({"progress": message}))
            queue.put_nowait({"result": done if isinstance(done, dict) else asdict(done)})
        except ConveyorError as exc:
            queue.put_nowait({**_error_body(exc), "status": _status(exc)})
        except Exception as exc:  # reported, never a hang
            queue.put_nowait({"error": f"internal error: {exc!r}", "status": 500})
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(run())
    _RUNNING.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_RUNNING.discard)

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield _ndjson(item)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def create_app(
    controller: Controller,
    token: str,
    info: Callable[[], dict[str, Any]],
    shutdown: Callable[[], None],
) -> ASGIApp:
    """The control API; ``info`` describes the platform, ``shutdown`` asks it to stop."""
    from conveyor.config import get_settings
    from conveyor.orchestrate import StreamService
    from conveyor.server.tasks import task_routes

    streams = StreamService(controller)
    api = FastAPI(
        title="Conveyor platform API",
        version="1",
        description="Push, scale and watch apps. Every request needs the bearer token.",
    )

    api.include_router(task_routes(controller, get_settings().home / "runs"))

    @api.exception_handler(ConveyorError)
    async def conveyor_error(_request: Request, exc: ConveyorError) -> JSONResponse:
        return JSONResponse(_error_body(exc), status_code=_status(exc))

    @api.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: still JSON, and the platform's log has the traceback.
        log.exception("control API request failed")
        return JSONResponse({"error": f"internal error: {exc!r}"}, 500)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, 400)

    # -- the platform ---------------------------------------------------------

    @api.get("/v1/info", summary="What this platform is and where it listens")
    async def get_info() -> dict[str, Any]:
        return info()

    @api.post("/v1/shutdown", status_code=202, summary="Stop every instance, then the platform")
    async def post_shutdown() -> dict[str, str]:
        asyncio.get_running_loop().call_soon(shutdown)
        return {"status": "stopping"}

    # -- uploads --------------------------------------------------------------

    @api.post("/v1/blobs/missing", summary="Which of these file digests the platform lacks")
    async def missing(body: MissingIn) -> dict[str, list[str]]:
        store = controller.artifacts
        return {"missing": [d for d in dict.fromkeys(body.digests) if not store.exists(d)]}

    @api.put("/v1/blobs/{digest}", status_code=201, summary="Upload one file by its digest")
    async def put_blob(
        request: Request, digest: Annotated[str, Path(pattern=_DIGEST)]
    ) -> dict[str, str]:
        store = controller.artifacts
        if store.exists(digest):
            return {"digest": digest}
        hasher = new_hasher()
        tmp_dir = store.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="upload-", dir=tmp_dir)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BLOB:
                        raise UsageError(f"the upload is larger than {MAX_BLOB} bytes")
                    hasher.update(chunk)
                    out.write(chunk)
            got = "blake3:" + hasher.hexdigest()
            if got != digest:
                raise UsageError(f"the uploaded bytes have digest {got}, not {digest}")
            stored = await asyncio.to_thread(store.put_file, pathlib.Path(tmp))
            assert stored == digest
        finally:
            os.unlink(tmp)
        return {"digest": digest}

    # -- apps -----------------------------------------------------------------

    @api.get("/v1/apps", summary="Every app: state, instances running/desired, routes, revision")
    async def list_apps() -> list[dict[str, Any]]:
        return views.list_apps(controller)

    @api.get("/v1/apps/{name}", summary="One app with its instances and recent events")
    async def get_app(name: AppName) -> dict[str, Any]:
        return views.describe(controller, name)

    @api.post("/v1/apps/{name}/push", summary="Stage and deploy a new revision (JSON lines)")
    async def push(name: AppName, body: PushIn) -> StreamingResponse:
        spec = body.spec
        files = None if body.files is None else {k: v.model_dump() for k, v in body.files.items()}
        _check_spec(name, spec, files)
        return _operation(lambda progress: controller.push(spec, files, body.instances, progress))

    @api.post("/v1/apps/{name}/scale", summary="Change the number of instances")
    async def scale(name: AppName, body: ScaleIn) -> dict[str, Any]:
        return asdict(await controller.scale(name, body.instances))

    @api.post("/v1/apps/{name}/env", summary="Set or unset variables (a revision for restart)")
    async def set_env(name: AppName, body: EnvIn) -> dict[str, int]:
        for key in [*body.set, *body.unset]:
            if not ENV_KEY.fullmatch(key):
                raise UsageError(f"{key!r} is not a variable name; use A-Z, 0-9 and '_'")
        return {"revision": await controller.set_env(name, body.set, body.unset)}

    @api.post("/v1/apps/{name}/restart", summary="Roll onto the newest revision (JSON lines)")
    async def restart(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return _operation(lambda progress: controller.restart(name, progress))

    @api.post("/v1/apps/{name}/restage", summary="Rebuild the droplet and roll (JSON lines)")
    async def restage(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return _operation(lambda progress: controller.restage(name, progress))

    @api.post("/v1/apps/{name}/rollback", summary="Roll back to a kept revision (JSON lines)")
    async def rollback(name: AppName, body: RollbackIn) -> StreamingResponse:
        controller.state.revision(name, body.revision)
        return _operation(lambda progress: controller.rollback(name, body.revision, progress))

    @api.post("/v1/apps/{name}/start", summary="Start a stopped app (JSON lines)")
    async def start(name: AppName) -> StreamingResponse:
        controller.state.app(name)
        return _operation(lambda progress: controller.start_app(name, progress))

    @api.post("/v1/apps/{name}/stop", summary="Stop every instance; the app stays")
    async def stop(name: AppName) -> dict[str, Any]:
        return asdict(await controller.stop(name))

    @api.delete("/v1/apps/{name}", summary="Stop and remove the app, its revisions and events")
    async def delete(name: AppName) -> dict[str, str]:
        await controller.delete(name)
        return {"deleted": name}

    @api.get("/v1/apps/{name}/revisions", summary="The app's kept revisions")
    async def revisions(name: AppName) -> list[dict[str, Any]]:
        return views.revisions(controller, name)

    @api.get("/v1/apps/{name}/events", summary="The app's latest events, oldest first")
    async def events(
        name: AppName, limit: Annotated[int, Query(ge=1, le=10_000)] = 50
    ) -> list[dict[str, Any]]:
        controller.state.app(name)
        return [
            {
                "at": e.at,
                "kind": e.kind,
                "instance": e.instance,
                "revision": e.revision,
                "details": e.details,
            }
            for e in controller.state.events(name, limit=limit)
        ]

    @api.get("/v1/apps/{name}/logs", summary="Recent lines, then new ones if following")
    async def logs(
        name: AppName,
        recent: Annotated[int, Query(ge=0, le=100_000)] = 100,
        follow: bool = False,
    ) -> StreamingResponse:
        controller.state.app(name)
        buffer = controller.target.logs(name)
        kept = buffer.recent(recent)
        cursor = buffer.next_seq

        def encode(line: Any) -> bytes:
            return _ndjson(
                {"index": line.index, "stream": line.stream, "text": line.text, "at": line.at}
            )

        async def lines() -> AsyncIterator[bytes]:
            for line in kept:
                yield encode(line)
            if follow:
                async for line in buffer.follow(cursor):
                    yield encode(line)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @api.post("/v1/droplets/gc", summary="Remove droplets no kept revision uses")
    async def collect_droplets(
        dry_run: bool = False, min_age: Annotated[float, Query(ge=0)] = 3600.0
    ) -> dict[str, Any]:
        report = await controller.collect_droplets(dry_run=dry_run, min_age=min_age)
        return {"removed": report.removed, "bytes": report.bytes, "dry_run": dry_run}

    # -- services -------------------------------------------------------------

    @api.get("/v1/services", summary="User-provided services and the apps bound to them")
    async def list_services() -> list[dict[str, Any]]:
        return views.services(controller)

    @api.post("/v1/services", status_code=201, summary="Create or update a user-provided service")
    async def create_service(body: ServiceIn) -> dict[str, Any]:
        created = controller.state.save_service(body.name, body.credentials)
        return {"name": body.name, "created": created}

    @api.delete("/v1/services/{service}", summary="Delete a service no app is bound to")
    async def delete_service(
        service: Annotated[str, Path(pattern=_SERVICE)],
    ) -> dict[str, str]:
        controller.delete_service(service)
        return {"deleted": service}

    @api.put("/v1/apps/{name}/services/{service}", summary="Bind (takes effect on restart)")
    async def bind(
        name: AppName, service: Annotated[str, Path(pattern=_SERVICE)]
    ) -> dict[str, int]:
        return {"revision": await controller.bind(name, service, bound=True)}

    @api.delete("/v1/apps/{name}/services/{service}", summary="Unbind (takes effect on restart)")
    async def unbind(
        name: AppName, service: Annotated[str, Path(pattern=_SERVICE)]
    ) -> dict[str, int]:
        return {"revision": await controller.bind(name, service, bound=False)}

    # -- streams --------------------------------------------------------------

    @api.get("/v1/streams", summary="Every stream: definition, status, deployed version")
    async def list_streams() -> list[dict[str, Any]]:
        return streams.list_streams()

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

        return _operation(
            lambda progress: streams.deploy(name, body.properties, body.binder, progress)
        )

    @api.post("/v1/streams/{name}/update", summary="Redeploy with changed properties (lines)")
    async def update_stream(name: StreamName, body: StreamDeployIn) -> StreamingResponse:
        _properties(body.properties)
        streams.history(name)
        return _operation(lambda progress: streams.update(name, body.properties, progress))

    @api.post("/v1/streams/{name}/rollback", summary="Redeploy a former version (JSON lines)")
    async def rollback_stream(name: StreamName, body: StreamRollbackIn) -> StreamingResponse:
        streams.history(name)
        return _operation(lambda progress: streams.rollback(name, body.version, progress))

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
        files = None if body.files is None else {k: v.model_dump() for k, v in body.files.items()}
        return await streams.register(body.name, body.uri, files)

    @api.delete("/v1/stream-apps/{app}", summary="Forget a user app")
    async def unregister_stream_app(app: Annotated[str, Path(max_length=100)]) -> dict[str, str]:
        streams.unregister(app)
        return {"unregistered": app}

    @api.get("/v1/stream-apps/{app}", summary="One app's roles and options")
    async def stream_app_info(app: Annotated[str, Path(max_length=100)]) -> list[dict[str, Any]]:
        from conveyor.streams.catalogue import CATALOGUE

        found = [a for a in CATALOGUE.values() if a.name == app]
        uri = streams.registered().get(app)
        if uri is not None:
            return [
                {
                    "name": app,
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
            ]
        if not found:
            known = ", ".join(sorted({a.name for a in CATALOGUE.values()}))
            raise NotFoundError(f"there is no stream app named {app!r}; the apps: {known}")
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

    return _TokenGuard(api, token)


def _properties(properties: Mapping[str, str]) -> None:
    from conveyor.streams.plan import parse_properties

    parse_properties(",".join(f"{k}={v}" for k, v in properties.items()))


def _check_spec(name: str, spec: AppSpec, files: Files | None) -> None:
    """Refuse a spec no kind can run, before the stream of progress lines starts."""
    if spec.name != name:
        raise UsageError(f"the spec is of app {spec.name!r}, not of {name!r} as the path says")
    if spec.path is not None:
        raise UsageError(
            f"app {name!r}: 'path' is a folder on the pushing machine; upload its files instead"
        )
    if not kind_named(spec.kind).pushable:
        raise UsageError(f"app {name!r}: {spec.kind} apps are made by the platform, not pushed")
    kind_named(spec.kind).check(spec, files)
