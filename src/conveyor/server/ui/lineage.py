"""Lineage: from a run, model version, artifact digest or request id, the chain drawn as a graph.

The graph is :func:`conveyor.repro.lineage.trace`'s (as ``conveyor lineage``
and ``GET /v1/lineage`` answer it), laid out in columns by how far each node
is from the one asked about: what made it to the left, what used it to the
right, data flowing left to right. Every box links to its page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.server._common import status_for
from conveyor.server.ui.context import Ui

if TYPE_CHECKING:
    from conveyor.repro.lineage import Graph, Node

__all__ = ["Box", "layout", "routes"]

BOX_W, BOX_H, COL_GAP, ROW_GAP, PAD = 200, 46, 44, 18, 12

#: How a kind is named on its box.
KIND_NAMES = {
    "request": "request",
    "revision": "app revision",
    "model-version": "model version",
    "artifact": "artifact",
    "run": "run",
    "code": "code",
    "stream": "stream",
    "task-step": "task step",
}


@dataclass
class Box:
    id: str
    kind: str
    label: str
    href: str | None
    x: int
    y: int
    root: bool = False


def href(node: Node) -> str | None:
    """The dashboard page of a node (another lineage for artifacts and requests)."""
    details = node.details
    if node.kind == "run":
        return f"/ui/runs/{node.key}"
    if node.kind == "model-version":
        return f"/ui/models/{quote(str(details['model']))}#v{details['version']}"
    if node.kind == "revision":
        return f"/ui/apps/{quote(str(details['app']))}"
    if node.kind == "stream":
        return f"/ui/streams/{quote(node.key.rpartition('@')[0])}"
    if node.kind == "task-step":
        return f"/ui/tasks/executions/{quote(node.key.partition('/')[0])}"
    if node.kind in ("artifact", "request"):
        return "/ui/lineage?" + urlencode({"ref": node.key})
    return None


def _ranks(graph: Graph) -> dict[str, int]:
    """Each node's column: 0 for the root, negative up (what made it), positive down.

    Every edge points right: a node two things were made from sits left of both
    (the code two runs ran), a node two things used sits right of both.
    """
    rank = {graph.root: 0}
    for _ in range(len(graph.nodes) + 1):  # edges were added walking out from the root
        settled = True
        for source, target, _relation in graph.edges:
            if target in rank and source not in rank:
                rank[source] = rank[target] - 1
            elif source in rank and target not in rank:
                rank[target] = rank[source] + 1
            elif source in rank and target in rank and rank[source] >= rank[target]:
                if target != graph.root and rank[target] > 0:
                    rank[target] = rank[source] + 1
                elif source != graph.root:
                    rank[source] = rank[target] - 1
                else:
                    continue  # a cycle through the root: leave it drawn backwards
            else:
                continue
            settled = False
        if settled:
            break
    return {node: rank.get(node, 0) for node in graph.nodes}


def _curve(a: Box, b: Box) -> str:
    """An SVG path from ``a``'s right side to ``b``'s left; one passing over other columns
    dips into the gap below its row rather than run hidden behind the boxes."""
    x1, y1, x2, y2 = a.x + BOX_W, a.y + BOX_H // 2, b.x - 2, b.y + BOX_H // 2
    if x2 - x1 <= COL_GAP:
        mid = (x1 + x2) // 2
        return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
    low = max(y1, y2) + BOX_H // 2 + 14
    return f"M{x1},{y1} C{x1 + COL_GAP},{low} {x2 - COL_GAP},{low} {x2},{y2}"


def layout(graph: Graph) -> tuple[list[Box], list[tuple[str, str]], int, int]:
    """Boxes in columns by rank; edges (SVG path, relation); the drawing's size."""
    ranks = _ranks(graph)
    low = min(ranks.values(), default=0)
    columns: dict[int, list[str]] = {}
    for node_id in graph.nodes:
        columns.setdefault(ranks[node_id] - low, []).append(node_id)
    boxes: dict[str, Box] = {}
    for column, ids in sorted(columns.items()):
        for row, node_id in enumerate(ids):
            node = graph.nodes[node_id]
            boxes[node_id] = Box(
                node_id,
                node.kind,
                node.label,
                href(node),
                PAD + column * (BOX_W + COL_GAP),
                PAD + row * (BOX_H + ROW_GAP),
                root=node_id == graph.root,
            )
    edges = [
        (_curve(boxes[s], boxes[t]), relation)
        for s, t, relation in graph.edges
        if s in boxes and t in boxes
    ]
    width = PAD * 2 + len(columns) * (BOX_W + COL_GAP) - COL_GAP
    height = PAD * 2 + max((len(ids) for ids in columns.values()), default=1) * (BOX_H + ROW_GAP)
    return list(boxes.values()), edges, max(width, 200), height - ROW_GAP


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()

    @api.get("/lineage")
    async def lineage_page(
        request: Request, ref: Annotated[str, Query(max_length=1000)] = ""
    ) -> Response:
        ui.session(request)
        from conveyor.repro.lineage import Sources, trace

        ref = ref.strip()
        if not ref:
            return ui.view(request, "lineage.html", ref="", problem=None, graph=None)
        # No file paths from a page: a caller could probe the platform's files with them.
        sources = Sources(ui.controller.state.registry, ui.settings, files=False)
        try:
            graph = await run_in_threadpool(trace, ref, sources)
        except ConveyorError as exc:
            problem = exc.message + (f"\n{exc.hint}" if exc.hint else "")
            return ui.view(
                request,
                "lineage.html",
                http_status=status_for(exc),
                ref=ref,
                problem=problem,
                graph=None,
            )
        boxes, edges, width, height = layout(graph)
        return ui.view(
            request,
            "lineage.html",
            ref=ref,
            problem=None,
            graph=graph,
            boxes=boxes,
            edges=edges,
            width=width,
            height=height,
            box_w=BOX_W,
            box_h=BOX_H,
            kinds=KIND_NAMES,
        )

    return api
