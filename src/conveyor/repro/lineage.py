"""Lineage: from a request, run, artifact or model up to what made it and down to what used it.

The graph is made of nodes of registered kinds (:data:`NODE_KINDS`). A kind
knows how to recognise what the user typed (``parse``), how to describe one
of its nodes, and its neighbours: ``up`` (what it was made from) and
``down`` (what used it). Adding a kind is one :class:`NodeKind` passed to
:func:`register_node_kind`; see :mod:`conveyor.repro.lineage_kinds` for the
built-in ones (requests, revisions, registered model versions, artifacts, runs)::

    graph = trace("run:3f2a9c", sources)
    graph.root                       # 'run:3f2a9c01...'
    graph.to_json()["edges"][0]      # {'from': 'artifact:blake3:..', 'to': 'run:3f2a..', ...}

Edges point the way data flows: from an input to the run that read it, from a
run to the model it saved, from a model to the app revision serving it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.errors import NotFoundError
from conveyor.store.registry import Registry

__all__ = [
    "NODE_KINDS",
    "Graph",
    "Link",
    "Node",
    "NodeKind",
    "Sources",
    "register_node_kind",
    "trace",
]

#: Most nodes one query visits (a run read by thousands of later runs stays readable).
MAX_NODES = 500


@dataclass(frozen=True)
class Node:
    kind: str
    key: str
    label: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class Link:
    """A neighbour of a node and how they relate (``read``, ``saved``, ``serves`` ...)."""

    node: Node
    relation: str


@dataclass
class Sources:
    """What the kinds read: the registry and the request logs."""

    registry: Registry
    settings: Settings
    #: Whether a reference may name a file to hash (the CLI's own machine; not over the API,
    #: where it would let a caller probe the platform's files).
    files: bool = True

    @property
    def request_logs(self) -> Path:
        return self.settings.request_log_root


@dataclass(frozen=True)
class NodeKind:
    name: str
    #: The node ``text`` names, or None when it does not name one of this kind.
    parse: Callable[[str, Sources], Node | None]
    up: Callable[[Node, Sources], list[Link]]
    down: Callable[[Node, Sources], list[Link]]


#: Kinds in the order ``trace`` tries them on the user's text.
NODE_KINDS: dict[str, NodeKind] = {}


def register_node_kind(kind: NodeKind, *, before: str | None = None) -> None:
    """Add ``kind`` (tried before the kind named ``before``, else last)."""
    items = [(k, v) for k, v in NODE_KINDS.items() if k != kind.name]
    at = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(at, (kind.name, kind))
    NODE_KINDS.clear()
    NODE_KINDS.update(items)


@dataclass
class Graph:
    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    #: (from, to, relation), data-flow direction.
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    #: True when MAX_NODES cut the walk short.
    truncated: bool = False

    def add(self, node: Node) -> bool:
        if node.id in self.nodes:
            return False
        self.nodes[node.id] = node
        return True

    def link(self, source: str, target: str, relation: str) -> None:
        edge = (source, target, relation)
        if edge not in self.edges:
            self.edges.append(edge)

    def parents(self, node_id: str) -> list[tuple[str, str]]:
        return [(s, r) for s, t, r in self.edges if t == node_id]

    def children(self, node_id: str) -> list[tuple[str, str]]:
        return [(t, r) for s, t, r in self.edges if s == node_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [
                {"id": n.id, "kind": n.kind, "key": n.key, "label": n.label, "details": n.details}
                for n in self.nodes.values()
            ],
            "edges": [{"from": s, "to": t, "relation": r} for s, t, r in self.edges],
            "truncated": self.truncated,
        }


def resolve(text: str, sources: Sources) -> Node:
    """The node ``text`` names; NotFoundError says what was searched."""
    from conveyor.repro import lineage_kinds  # noqa: F401 - registers the built-in kinds

    text = text.strip()
    for kind in NODE_KINDS.values():
        node = kind.parse(text, sources)
        if node is not None:
            return node
    raise NotFoundError(
        f"{text!r} names nothing Conveyor recorded: searched the runs (by id), the artifacts "
        f"(by digest), model files (by path) and the request logs in {sources.request_logs}",
        hint="Give a request id, run:<id>, a run id, models:/<name>/<N>, a blake3:/sha256: "
        "digest or a model file.",
    )


def trace(text: str, sources: Sources) -> Graph:
    """The graph around what ``text`` names: everything up from it and everything down."""
    root = resolve(text, sources)
    graph = Graph(root.id)
    graph.add(root)
    _walk(graph, root, sources, up=True)
    _walk(graph, root, sources, up=False)
    return graph


def _walk(graph: Graph, start: Node, sources: Sources, *, up: bool) -> None:
    todo = [start]
    seen = {start.id}
    while todo:
        node = todo.pop(0)
        kind = NODE_KINDS[node.kind]
        for link in (kind.up if up else kind.down)(node, sources):
            other = link.node
            if other.id not in graph.nodes and len(graph.nodes) >= MAX_NODES:
                graph.truncated = True
                return
            graph.add(other)
            if up:
                graph.link(other.id, node.id, link.relation)
            else:
                graph.link(node.id, other.id, link.relation)
            if other.id not in seen:
                seen.add(other.id)
                todo.append(other)
