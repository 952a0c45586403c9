"""Streams: each definition drawn as a graph with its apps' live counters, and its history."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.server.ui.context import Ui, back
from conveyor.server.ui.render import page
from conveyor.server.ui.session import Session

__all__ = ["Node", "layout", "routes"]

StreamName = Annotated[str, Path(min_length=1, max_length=200)]

APP_W, APP_H, DEST_W, DEST_H, GAP, PAD = 180, 100, 150, 34, 46, 12


@dataclass
class Node:
    """One box of the drawing: a stream app or a destination between two of them."""

    kind: str  # "source" | "processor" | "sink" | "destination"
    label: str
    x: int
    y: int
    w: int
    h: int
    app: dict[str, Any] = field(default_factory=dict)


def layout(apps: list[dict[str, Any]]) -> tuple[list[Node], list[tuple[int, int, int, int]], int]:
    """Boxes left to right in pipe order, destinations between the apps they join.

    Returns the nodes, the edges (x1, y1, x2, y2) and the drawing's width.
    """
    nodes: list[Node] = []
    edges: list[tuple[int, int, int, int]] = []
    placed: dict[str, Node] = {}
    mid = PAD + APP_H // 2
    x = PAD

    def join(a: Node, b: Node) -> None:
        edges.append((a.x + a.w, a.y + a.h // 2, b.x, b.y + b.h // 2))

    def destination(name: str) -> Node:
        nonlocal x
        if name not in placed:
            node = Node("destination", name, x, mid - DEST_H // 2, DEST_W, DEST_H)
            nodes.append(node)
            placed[name] = node
            x += DEST_W + GAP
        return placed[name]

    for app in apps:
        source = None if not app.get("input") else destination(str(app["input"]))
        kind = "source" if source is None else "sink" if not app.get("output") else "processor"
        node = Node(kind, str(app.get("app") or app["name"]), x, PAD, APP_W, APP_H, app)
        nodes.append(node)
        x += APP_W + GAP
        if source is not None:
            join(source, node)
        if app.get("output"):
            join(node, destination(str(app["output"])))
    return nodes, edges, max(x - GAP + PAD, 200)


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    service = ui.streams

    @api.get("/streams")
    async def streams_page(request: Request) -> Response:
        ui.session(request)
        return ui.view(request, "streams.html", streams=service.list_streams())

    @api.get("/streams/{name}")
    async def stream_page(request: Request, name: StreamName) -> Response:
        ui.session(request)
        info = await run_in_threadpool(service.info, name)
        return ui.view(
            request, "stream.html", stream=info, history=service.history(name), **_drawing(info)
        )

    @api.post("/streams/{name}/deploy")
    async def deploy(request: Request, name: StreamName) -> Response:
        """Deploy (again) with the properties and binder of its latest version."""
        session, _ = await ui.action(request)

        async def work() -> str:
            versions = service.records.versions(name)
            properties = dict(versions[-1].properties) if versions else {}
            done = await service.deploy(
                name, properties, None, lambda _line: None, description="deploy (dashboard)"
            )
            return f"stream {name} deployed (version {done['version']})"

        return await _reported(session, name, work())

    @api.post("/streams/{name}/undeploy")
    async def undeploy(request: Request, name: StreamName) -> Response:
        """Stop and remove the stream's apps; the definition and its history stay."""
        session, _ = await ui.action(request)

        async def work() -> str:
            done = await service.undeploy(name)
            return f"stream {name} undeployed: {len(done['removed'])} app(s)"

        return await _reported(session, name, work())

    @api.get("/streams/{name}/graph")
    async def graph(request: Request, name: StreamName) -> Response:
        """The drawing alone, which the stream page polls for fresh counters."""
        ui.session(request)
        info = await run_in_threadpool(service.info, name)
        return page("_graph.html", stream=info, **_drawing(info))

    return api


async def _reported(session: Session, name: str, work: Awaitable[str]) -> Response:
    """Run an action on the stream, say on its page how it went, and show the page again."""
    try:
        session.flash.append(("ok", await work))
    except ConveyorError as exc:
        session.flash.append(("error", exc.message))
    return back(f"/ui/streams/{name}")


def _drawing(info: dict[str, Any]) -> dict[str, Any]:
    nodes, edges, width = layout(info["apps"])
    return {"nodes": nodes, "edges": edges, "width": width, "height": APP_H + 2 * PAD}
