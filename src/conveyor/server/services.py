"""User-provided services (credentials apps are bound to) and the bindings themselves."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import Field

from conveyor.platform import views
from conveyor.platform.controller import Controller
from conveyor.server._common import AppName, Strict

__all__ = ["routes"]

_SERVICE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ServiceName = Annotated[str, Path(pattern=_SERVICE, description="The service's name.")]


class ServiceIn(Strict):
    name: str = Field(pattern=_SERVICE)
    credentials: dict[str, Any]


def routes(controller: Controller) -> APIRouter:
    api = APIRouter(tags=["services"])

    @api.get("/v1/services", summary="User-provided services and the apps bound to them")
    async def list_services() -> list[dict[str, Any]]:
        return views.services(controller)

    @api.post("/v1/services", status_code=201, summary="Create or update a user-provided service")
    async def create_service(body: ServiceIn) -> dict[str, Any]:
        created = controller.state.save_service(body.name, body.credentials)
        return {"name": body.name, "created": created}

    @api.delete("/v1/services/{service}", summary="Delete a service no app is bound to")
    async def delete_service(service: ServiceName) -> dict[str, str]:
        controller.delete_service(service)
        return {"deleted": service}

    @api.put("/v1/apps/{name}/services/{service}", summary="Bind (takes effect on restart)")
    async def bind(name: AppName, service: ServiceName) -> dict[str, int]:
        return {"revision": await controller.bind(name, service, bound=True)}

    @api.delete("/v1/apps/{name}/services/{service}", summary="Unbind (takes effect on restart)")
    async def unbind(name: AppName, service: ServiceName) -> dict[str, int]:
        return {"revision": await controller.bind(name, service, bound=False)}

    return api
