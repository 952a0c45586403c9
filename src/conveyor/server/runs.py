"""The control API's runs: listed and searched, tagged, deleted and restored.

The same search expression as ``conveyor runs --where`` and the dashboard's
search box (:mod:`conveyor.store.search`); a malformed one is a 400 whose
message points at the mistake.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from conveyor.errors import UsageError
from conveyor.server._common import Strict
from conveyor.store.listing import RunFilter
from conveyor.store.records import RunRecord, RunStatus
from conveyor.store.registry import Registry

__all__ = ["routes", "run_json"]

RunId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,32}$", description="A run id, or its start.")]


TagKey = Annotated[str, Field(min_length=1, max_length=250)]
TagValue = Annotated[str, Field(max_length=5000)]


class TagsIn(Strict):
    tags: dict[TagKey, TagValue] = Field(min_length=1)


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as listings show it: attributes, params, latest metrics and tags."""
    return {
        "id": run.id,
        "name": run.name,
        "experiment": run.experiment,
        "status": run.status.value,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "deleted_at": run.deleted_at,
        "params": run.params,
        "metrics": run.latest_metrics(),
        "tags": run.tags,
    }


def routes(registry: Registry) -> APIRouter:
    api = APIRouter(prefix="/v1/runs", tags=["runs"])

    @api.get("", summary="Runs, newest first, filtered by a search expression")
    async def list_runs(
        where: Annotated[str, Query(max_length=4000)] = "",
        experiment: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(max_length=20)] = None,
        deleted: bool = False,
        sort: Annotated[str, Query(max_length=260)] = "started",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        after: Annotated[str | None, Query(max_length=200)] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        wanted = _status(status)
        page = await run_in_threadpool(
            registry.list_runs_page,
            limit=limit,
            after=after,
            offset=offset,
            only=RunFilter(wanted, experiment, where, deleted),
            sort=sort,
            descending=order == "desc",
        )
        return {"runs": [run_json(r) for r in page.runs], "next": page.next, "more": page.more}

    @api.get("/{run_id}", summary="One run")
    async def get_run(run_id: RunId) -> dict[str, Any]:
        return run_json(await run_in_threadpool(registry.get_run, run_id))

    @api.post("/{run_id}/tags", summary="Set tags on a run")
    async def set_tags(run_id: RunId, body: TagsIn) -> dict[str, Any]:
        full = await run_in_threadpool(registry.set_tags, run_id, body.tags)
        return run_json(await run_in_threadpool(registry.get_run, full))

    @api.delete("/{run_id}/tags/{key}", summary="Remove a tag from a run")
    async def remove_tag(
        run_id: RunId, key: Annotated[str, Path(max_length=250)]
    ) -> dict[str, Any]:
        full = await run_in_threadpool(registry.remove_tags, run_id, [key])
        return run_json(await run_in_threadpool(registry.get_run, full))

    @api.post("/{run_id}/delete", summary="Delete a run (restorable until artifacts gc)")
    async def delete_run(run_id: RunId) -> dict[str, Any]:
        full = await run_in_threadpool(registry.delete_run, run_id)
        return run_json(await run_in_threadpool(registry.get_run, full))

    @api.post("/{run_id}/restore", summary="Restore a deleted run")
    async def restore_run(run_id: RunId) -> dict[str, Any]:
        full = await run_in_threadpool(registry.delete_run, run_id, restore=True)
        return run_json(await run_in_threadpool(registry.get_run, full))

    return api


def _status(text: str | None) -> RunStatus | None:
    if not text:
        return None
    try:
        return RunStatus(text.upper())
    except ValueError:
        raise UsageError(
            f"{text!r} is not a run status; use one of " + ", ".join(s.value for s in RunStatus)
        ) from None
