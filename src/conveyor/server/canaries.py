"""Canaries: an app's new revision beside its current one; its weight, promotion or abort.

A canary starts with a push (``PushIn.canary`` in :mod:`.apps`); these routes
act on the one in progress. Refusals are 409 (no canary, or one already
running) with a sentence saying why.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from conveyor.errors import NotFoundError
from conveyor.platform.controller import Controller
from conveyor.server._common import AppName, Strict

__all__ = ["routes"]


class WeightIn(Strict):
    weight: int = Field(ge=0, le=100, description="Percent of requests the new revision gets.")


def routes(controller: Controller) -> APIRouter:
    api = APIRouter(tags=["canaries"])
    canaries = controller.canaries

    @api.get("/v1/apps/{name}/canary", summary="The canary in progress: revisions, weight, counts")
    async def show(name: AppName) -> dict[str, Any]:
        controller.state.app(name)
        run = canaries.get(name)
        if run is None:
            raise NotFoundError(f"app {name!r} has no canary running")
        return run.view()

    @api.post("/v1/apps/{name}/canary", summary="Change the share of requests the canary gets")
    async def weight(name: AppName, body: WeightIn) -> dict[str, Any]:
        return (await canaries.set_weight(name, body.weight)).view()

    @api.post("/v1/apps/{name}/canary/promote", summary="The new revision takes every request")
    async def promote(name: AppName) -> dict[str, Any]:
        return asdict(await canaries.promote(name))

    @api.post("/v1/apps/{name}/canary/abort", summary="The current revision takes every request")
    async def abort(name: AppName) -> dict[str, Any]:
        return asdict(await canaries.abort(name))

    return api
