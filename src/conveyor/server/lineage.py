"""``GET /v1/lineage?ref=...``: the lineage graph of a request, run, artifact or model."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from conveyor.config import Settings
from conveyor.store.registry import Registry

__all__ = ["routes"]


def routes(registry: Registry, settings: Settings) -> APIRouter:
    api = APIRouter(tags=["lineage"])

    @api.get(
        "/v1/lineage",
        summary="What made a request, run, artifact or model (up) and what used it (down)",
    )
    async def lineage(
        ref: Annotated[
            str,
            Query(
                min_length=1,
                max_length=1000,
                description="A request id, run:<id>, a run id, a blake3:/sha256: digest, "
                "run:<id>/<model> or models:/<name>/<N> | models:/<name>@<alias> "
                "(a file path only on the command line)",
            ),
        ],
    ) -> dict[str, Any]:
        from conveyor.repro.lineage import Sources, trace

        sources = Sources(registry, settings, files=False)
        graph = await asyncio.to_thread(trace, ref, sources)
        return graph.to_json()

    return api
