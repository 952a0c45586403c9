"""Models: the registry's models with their versions and aliases; moving an alias (POST + CSRF)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError, UsageError
from conveyor.repro.registered import move_alias
from conveyor.server.ui.context import Ui, back
from conveyor.store.lineage import RevisionUse, revisions_of_version
from conveyor.store.models import ModelRepository, ModelVersion

__all__ = ["routes", "signature_summary"]

ModelName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


def signature_summary(signature: dict[str, Any] | None) -> str:
    """``age int64, sex object → label int64`` (and the task), or a dash."""
    if not signature:
        return "-"

    def fields(side: str) -> str:
        return ", ".join(
            f"{f.get('name')} {f.get('dtype', '?')}" for f in signature.get(side) or ()
        )

    text = f"{fields('inputs') or '?'} → {fields('outputs') or '?'}"
    return f"{text} ({signature['task']})" if signature.get("task") else text


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    registry = ui.controller.state.registry
    repo = ModelRepository(registry)

    @api.get("/models")
    async def models_page(request: Request) -> Response:
        ui.session(request)
        return ui.view(request, "models.html", models=await run_in_threadpool(repo.models))

    @api.get("/models/{name}")
    async def model_page(request: Request, name: ModelName) -> Response:
        ui.session(request)
        model = await run_in_threadpool(repo.model, name)
        versions: list[ModelVersion] = await run_in_threadpool(repo.versions, name)
        served = await run_in_threadpool(_served, versions)
        return ui.view(
            request,
            "model.html",
            model=model,
            versions=list(reversed(versions)),
            served=served,
            signature_summary=signature_summary,
        )

    def _served(versions: list[ModelVersion]) -> dict[int, list[RevisionUse]]:
        """The app revisions serving each version (staged from it, or naming it)."""
        return {
            v.version: revisions_of_version(registry, v.model, v.version, set(v.aliases))
            for v in versions
        }

    @api.post("/models/{name}/alias")
    async def alias(request: Request, name: ModelName) -> Response:
        session, form = await ui.action(request)
        alias_name = form.get("alias", "").strip()
        force = form.get("force") == "1"

        def work() -> str:
            text = form.get("version", "")
            if not text.isdigit():
                raise UsageError(f"version {text!r} is not a version number (1, 2, ...)")
            number = int(text)
            before = move_alias(registry, name, alias_name, number, force=force)
            moved = f" (was version {before})" if before not in (None, number) else ""
            return f"Alias {alias_name} now points at version {number}{moved}"

        try:
            done = await run_in_threadpool(work)
        except ConveyorError as exc:
            refused = isinstance(exc, UsageError) and "signature" in exc.message
            hint = (
                ". Apps following the alias would receive requests they cannot take; tick "
                "'even if the signature differs' to move it anyway."
                if refused
                else ""
            )
            session.flash.append(("error", exc.message + hint))
        else:
            session.flash.append(("ok", done))
        return back(f"/ui/models/{name}")

    return api
