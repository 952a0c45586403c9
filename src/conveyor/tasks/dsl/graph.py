"""A definition as a graph of nodes and links (what a dashboard draws), and back.

Nodes are ``start``, ``end``, ``fail`` (only when ``$FAIL`` is used), ``app``, and
for each split a ``split`` node (its fork) and a ``sync`` node (its join). Plain
links run the flow; a link with ``on`` is a transition (``on`` in DSL form:
``0``, ``*``, ``'FAILED'``), and ``to_label`` marks a jump to a labelled element
rather than an app run in its place::

    a 'FAILED'->b && c
    [0 start] -> [2 a] -> [4 c] -> [1 end]
                 [2 a] -'FAILED'-> [3 b] -> [1 end]

``from_graph(to_graph(d)) == d`` for every valid definition; a graph that did not
come from one (a cycle, a fork without its join) is refused with the node named.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from conveyor.tasks.dsl.nodes import (
    END,
    FAIL,
    App,
    Argument,
    Definition,
    Element,
    Flow,
    Split,
    Transition,
    to_text,
)
from conveyor.tasks.dsl.validate import check_definition
from conveyor.tasks.errors import TaskError

__all__ = ["Graph", "Link", "Node", "from_graph", "to_graph"]

_KINDS = ("start", "end", "fail", "app", "split", "sync")


@dataclass(frozen=True)
class Node:
    id: int
    kind: str
    name: str = ""
    label: str | None = None
    arguments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Link:
    source: int
    target: int
    on: str | None = None
    to_label: bool = False


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The graph as plain JSON-ready data (the control API's form)."""
        return {
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "name": n.name,
                    "label": n.label,
                    "arguments": dict(n.arguments),
                }
                for n in self.nodes
            ],
            "links": [
                {"source": k.source, "target": k.target, "on": k.on, "to_label": k.to_label}
                for k in self.links
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Graph:
        """Read :meth:`to_json`'s form, naming the first field that is wrong."""
        try:
            nodes = tuple(
                Node(
                    int(n["id"]),
                    str(n["kind"]),
                    str(n.get("name", "")),
                    None if n.get("label") is None else str(n["label"]),
                    tuple((str(k), str(v)) for k, v in dict(n.get("arguments") or {}).items()),
                )
                for n in data["nodes"]
            )
            links = tuple(
                Link(
                    int(k["source"]),
                    int(k["target"]),
                    None if k.get("on") is None else str(k["on"]),
                    bool(k.get("to_label", False)),
                )
                for k in data.get("links", ())
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise TaskError(
                f"graph: expected {{'nodes': [{{'id', 'kind', ...}}], 'links': [...]}}: {error!r}"
            ) from error
        return cls(nodes, links)


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.links: list[Link] = []
        self.heads: dict[str, int] = {}
        self.jumps: list[tuple[int, str]] = []
        self.start = self.node("start", "START")
        self.end = self.node("end", "END")
        self.fail: int | None = None

    def node(self, kind: str, name: str, label: str | None = None, app: App | None = None) -> int:
        arguments = tuple((a.name, a.value) for a in app.arguments) if app else ()
        self.nodes.append(Node(len(self.nodes), kind, name, label, arguments))
        if label:
            self.heads[label] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def enter(self, before: int | None, node: int) -> None:
        if before is not None:  # a secondary sequence is entered only by a jump
            self.links.append(Link(before, node))

    def app(self, app: App, before: int | None, exit_: int) -> int:
        n = self.node("app", app.name, app.label, app)
        self.enter(before, n)
        for t in app.transitions:
            if t.app is not None:
                m = self.node("app", t.app.name, t.app.label, t.app)
                self.links += [Link(n, m, t.check), Link(m, exit_)]
            elif t.label is not None:
                # The label may be defined further on: keep the link's place (the
                # order of transitions is the order they are tried) and aim it later.
                self.jumps.append((len(self.links), t.label))
                self.links.append(Link(n, n, t.check, to_label=True))
            elif t.ending == FAIL:
                if self.fail is None:
                    self.fail = self.node("fail", "FAIL")
                self.links.append(Link(n, self.fail, t.check))
            else:
                self.links.append(Link(n, self.end, t.check))
        return n

    def element(self, element: Element, before: int | None, exit_: int) -> int:
        if isinstance(element, App):
            return self.app(element, before, exit_)
        fork = self.node("split", "SPLIT", element.label)
        self.enter(before, fork)
        join = self.node("sync", "SYNC")
        for flow in element.flows:
            self.flow(flow, fork, join)
        return join

    def flow(self, flow: Flow, entry: int | None, exit_: int) -> None:
        last = self.element(flow.elements[0], entry, exit_)
        for element in flow.elements[1:]:
            last = self.element(element, last, exit_)
        self.links.append(Link(last, exit_))


def to_graph(definition: Definition) -> Graph:
    """The nodes and links of a definition (node ids follow the text's order)."""
    builder = _Builder()
    builder.flow(definition.main, builder.start, builder.end)
    for sequence in definition.sequences[1:]:
        builder.flow(sequence, None, builder.end)
    for index, label in builder.jumps:
        link = builder.links[index]
        builder.links[index] = Link(link.source, builder.heads[label], link.on, to_label=True)
    return Graph(tuple(builder.nodes), tuple(builder.links))


class _Reader:
    def __init__(self, graph: Graph) -> None:
        self.nodes = {n.id: n for n in graph.nodes}
        if len(self.nodes) != len(graph.nodes):
            raise TaskError("graph: two nodes share an id; expected unique ids")
        self.out: dict[int, list[Link]] = defaultdict(list)
        for link in graph.links:
            for end in (link.source, link.target):
                if end not in self.nodes:
                    raise TaskError(f"graph: a link names node {end}, which does not exist")
            self.out[link.source].append(link)
        for node in graph.nodes:
            if node.kind not in _KINDS:
                raise TaskError(f"graph: node {node.id} has kind {node.kind!r}; expected {_KINDS}")
        self.seen: set[int] = set()

    def next(self, node: int) -> int:
        plain = [k.target for k in self.out[node] if k.on is None]
        if len(plain) != 1:
            raise TaskError(f"graph: node {node} has {len(plain)} next links; expected 1")
        return plain[0]

    def visit(self, node: int) -> Node:
        if node in self.seen:
            raise TaskError(f"graph: node {node} is reached twice; expected a flow without cycles")
        self.seen.add(node)
        return self.nodes[node]

    def app(self, node: Node, transitions: bool = True) -> App:
        arguments = tuple(Argument(k, v) for k, v in node.arguments)
        found = []
        for link in self.out[node.id] if transitions else ():
            if link.on is None:
                continue
            target = self.nodes[link.target]
            if link.to_label:
                found.append(Transition(link.on, label=target.label))
            elif target.kind in ("end", "fail"):
                found.append(Transition(link.on, ending=END if target.kind == "end" else FAIL))
            elif target.kind == "app":
                found.append(Transition(link.on, app=self.app(self.visit(target.id), False)))
            else:
                raise TaskError(f"graph: transition from node {node.id} to a {target.kind} node")
        return App(node.name, node.label, arguments, tuple(found))

    def flow(self, first: int) -> tuple[Flow, int]:
        """The flow starting at node ``first`` and the node that ends it (a sync or end)."""
        elements: list[Element] = []
        current = first
        while True:
            node = self.visit(current)
            if node.kind == "app":
                elements.append(self.app(node))
                after = self.next(current)
            elif node.kind == "split":
                flows, joins = [], set()
                for link in self.out[current]:
                    flow, join = self.flow(link.target)
                    flows.append(flow)
                    joins.add(join)
                if len(joins) != 1 or self.nodes[next(iter(joins))].kind != "sync":
                    raise TaskError(f"graph: the split at node {current} does not join in one sync")
                elements.append(Split(tuple(flows), node.label))
                after = self.next(self.visit(joins.pop()).id)
            else:
                raise TaskError(f"graph: node {current} ({node.kind}) cannot start an element")
            if self.nodes[after].kind not in ("app", "split"):
                return Flow(tuple(elements)), after
            current = after


def from_graph(graph: Graph) -> Definition:
    """The definition a graph draws; refuses, naming the node, a graph no definition draws."""
    reader = _Reader(graph)
    starts = [n.id for n in graph.nodes if n.kind == "start"]
    if len(starts) != 1:
        raise TaskError(f"graph: {len(starts)} start nodes; expected exactly one")
    main, stop = reader.flow(reader.next(starts[0]))
    if reader.nodes[stop].kind != "end":
        raise TaskError(f"graph: the main flow ends at node {stop}; expected the end node")
    entered = {k.target for k in graph.links if k.on is None or not k.to_label}
    heads = sorted(n.id for n in graph.nodes if n.kind in ("app", "split") and n.id not in entered)
    sequences = [main] + [reader.flow(head)[0] for head in heads]
    if len(reader.seen) != sum(n.kind in ("app", "split", "sync") for n in graph.nodes):
        raise TaskError("graph: some nodes are not reachable from the start or a label")
    definition = Definition(tuple(sequences))
    check_definition(definition, to_text(definition))
    return definition
