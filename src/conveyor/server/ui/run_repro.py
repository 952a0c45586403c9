"""A run's package list (searchable on the server) and the runs that reproduce it, judged.

The package list is the JSON the recorder stored in the artifact store
(``environment.packages``, a digest); a reproduction's verdict compares the
digests of the outputs both runs recorded, as ``conveyor reproduce --verify``
does: every output identical, or which outputs differ or went missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.server.ui.context import Ui
from conveyor.store.records import RunRecord

__all__ = ["Verdict", "reproductions", "routes"]

#: Reproductions listed on a run's page, newest first.
SHOWN_REPRODUCTIONS = 50
#: Package rows drawn at most (a search narrows the rest).
SHOWN_PACKAGES = 2000


@dataclass
class Verdict:
    """One reproduction of a run and what its outputs say."""

    run: RunRecord
    #: "identical" | "different" | "missing" | "nothing to verify" | "pending"
    status: str
    different: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def reproductions(ui: Ui, run: RunRecord) -> list[Verdict]:
    """The runs reproducing ``run``, each with the verdict of its recorded output digests."""
    from conveyor.repro.compare import judge_outputs

    verdicts = []
    for other in ui.controller.state.registry.reproductions(run.id, SHOWN_REPRODUCTIONS):
        if not other.status.final:
            verdicts.append(Verdict(other, "pending"))
            continue
        judged = judge_outputs(run, other)
        different = [j.path for j in judged if j.status == "different"]
        missing = [j.path for j in judged if j.status == "missing"]
        if not judged:
            status = "nothing to verify"
        elif different:
            status = "different"
        elif missing:
            status = "missing"
        else:
            status = "identical"
        verdicts.append(Verdict(other, status, different, missing))
    return verdicts


def _packages(ui: Ui, run: RunRecord) -> tuple[list[dict[str, str]] | None, str | None]:
    """The run's recorded packages (name, version, local url), or why there are none."""
    digest = run.environment.get("packages")
    if not digest:
        return None, "This run recorded no package list."
    try:
        listing = ui.controller.artifacts.read_json(str(digest))
    except (ConveyorError, OSError, ValueError):
        return None, f"The package list {digest} is not readable in the artifact store."
    if not isinstance(listing, list):
        return None, f"The package list {digest} is not a list of packages."
    packages = [
        {
            "name": str(p.get("name", "")),
            "version": str(p.get("version", "")),
            "url": str(p.get("url", "")),
        }
        for p in listing
        if isinstance(p, dict)
    ]
    return sorted(packages, key=lambda p: p["name"].lower()), None


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _matches(package: dict[str, str], words: list[str]) -> bool:
    """Every word found in the name (as written or normalised) or the version."""
    name = package["name"]
    text = f"{name.lower()} {_norm(name)} {package['version'].lower()}"
    return all(w in text or _norm(w) in text for w in words)


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    registry = ui.controller.state.registry

    @api.get("/runs/{run_id}/packages")
    async def packages(
        request: Request, run_id: str, q: Annotated[str, Query(max_length=200)] = ""
    ) -> Response:
        ui.session(request)
        run = await run_in_threadpool(registry.get_run, run_id)
        found, problem = await run_in_threadpool(_packages, ui, run)
        words = q.lower().split()
        listed = [p for p in found or [] if _matches(p, words)] if words else found or []
        return ui.view(
            request,
            "run_packages.html",
            run=run,
            q=q,
            problem=problem,
            total=len(found or []),
            matched=len(listed),
            packages=listed[:SHOWN_PACKAGES],
        )

    return api
