"""A composed task's graph laid out left to right: each node in the column of its longest path.

The graph is the one ``conveyor task validate`` prints (``tasks/dsl/graph.py``):
start, end, fail, apps, and a split's fork and join. It has no cycles, so a
node's column is the length of the longest path from ``start`` to it, and
the nodes of one column stack in the order the definition names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Box", "Edge", "task_layout"]

APP_W, APP_H, DOT, COL_GAP, ROW_GAP, PAD = 150, 48, 28, 56, 18, 14


@dataclass(frozen=True)
class Box:
    """A node: an app step (a box with its state) or a marker (start, end, fork, join, fail)."""

    id: int
    kind: str
    label: str
    x: int
    y: int
    w: int
    h: int
    state: str = ""


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    #: The transition's exit status (``'FAILED'``, ``*``), if the link is one.
    on: str = ""


def _columns(nodes: list[dict[str, Any]], links: list[dict[str, Any]]) -> dict[int, int]:
    """Each node's column: the longest path from a node without incoming links."""
    incoming = {n["id"]: 0 for n in nodes}
    outgoing: dict[int, list[int]] = {n["id"]: [] for n in nodes}
    for link in links:
        incoming[link["target"]] += 1
        outgoing[link["source"]].append(link["target"])
    column = {n: 0 for n in incoming}
    ready = [n for n, count in incoming.items() if count == 0]
    while ready:
        node = ready.pop(0)
        for target in outgoing[node]:
            column[target] = max(column[target], column[node] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return column


def task_layout(
    graph: dict[str, Any], states: dict[str, str] | None = None
) -> tuple[list[Box], list[Edge], int, int]:
    """Boxes and edges of ``graph``, with ``states`` (step name -> state) on the app boxes.

    Returns the boxes, the edges, and the drawing's width and height.
    """
    nodes: list[dict[str, Any]] = list(graph.get("nodes", []))
    links: list[dict[str, Any]] = list(graph.get("links", []))
    column = _columns(nodes, links)
    columns = max(column.values(), default=0) + 1
    # A column of markers only (start, a fork, a join) is narrow; one with an app is a box wide.
    widths = [DOT + 24] * columns
    for node in nodes:
        if node["kind"] == "app":
            widths[column[node["id"]]] = APP_W
    lefts = [PAD + sum(widths[:c]) + c * COL_GAP for c in range(columns)]
    rows: dict[int, int] = {}
    boxes: dict[int, Box] = {}
    for node in nodes:
        col = column[node["id"]]
        row = rows.get(col, 0)
        rows[col] = row + 1
        is_app = node["kind"] == "app"
        w, h = (APP_W, APP_H) if is_app else (DOT, DOT)
        step = str(node.get("label") or node.get("name") or "")
        label = step if is_app else node["kind"]
        x = lefts[col] + (widths[col] - w) // 2
        y = PAD + row * (APP_H + ROW_GAP) + (APP_H - h) // 2
        state = (states or {}).get(step, "") if is_app else ""
        boxes[node["id"]] = Box(node["id"], node["kind"], label, x, y, w, h, state)
    edges = [
        Edge(
            boxes[k["source"]].x + boxes[k["source"]].w,
            boxes[k["source"]].y + boxes[k["source"]].h // 2,
            boxes[k["target"]].x,
            boxes[k["target"]].y + boxes[k["target"]].h // 2,
            str(k.get("on") or ""),
        )
        for k in links
    ]
    height = max(rows.values(), default=1)
    return (
        list(boxes.values()),
        edges,
        2 * PAD + sum(widths) + (columns - 1) * COL_GAP,
        2 * PAD + height * APP_H + (height - 1) * ROW_GAP,
    )
