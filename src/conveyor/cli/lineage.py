"""``conveyor lineage REF``: what made a prediction, run or model, and what used it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.repro.lineage import Graph

__all__ = ["lineage_command", "render_dot", "render_tree"]


@click.command("lineage")
@click.argument("ref", metavar="REF")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as JSON (nodes, edges).")
@click.option("--dot", "as_dot", is_flag=True, help="Print the graph in Graphviz DOT.")
def lineage_command(ref: str, as_json: bool, as_dot: bool) -> None:
    """Trace REF up to what made it and down to what used it.

    REF is a request id (from an answer's x-request-id, when the app's request
    log was on: CONVEYOR_REQUEST_LOG), run:<id> or a run id, run:<id>/<model>,
    a registered version (models:/<name>/<N> or models:/<name>@<alias>),
    a blake3:/sha256: artifact digest, or a model file.

    \b
    Examples:
      conveyor lineage 5f0c9a0e41d2b7c8a1e3f4d500000001
      conveyor lineage run:3f2a9c --json
      conveyor lineage run:3f2a9c/model --dot | dot -Tsvg > lineage.svg
      conveyor lineage models:/diagnosis@champion
    """
    from conveyor.config import get_settings
    from conveyor.repro.lineage import Sources, trace
    from conveyor.store.registry import Registry

    if as_json and as_dot:
        raise click.UsageError("choose one of --json and --dot")
    settings = get_settings()
    with Registry.from_settings(settings) as registry:
        graph = trace(ref, Sources(registry, settings))
    if as_json:
        click.echo(json.dumps(graph.to_json(), indent=2, default=str))
    elif as_dot:
        click.echo(render_dot(graph))
    else:
        click.echo(render_tree(graph))


#: How an edge reads from the node below it, walking up and walking down.
_UP = {
    "answered": "answered by",
    "saved": "saved by",
    "wrote": "written by",
    "registered": "registered from",
}
_DOWN = {
    "read": "read by",
    "serves": "served by",
    "scores": "scored by",
    "ran": "ran as",
    "registered": "registered as",
}


def render_tree(graph: Graph) -> str:
    """The root, then what it was made from, then what used it, as indented trees."""
    root = graph.nodes[graph.root]
    lines = [root.label]
    for title, step, words in (
        ("made from:", graph.parents, _UP),
        ("used by:", graph.children, _DOWN),
    ):
        lines.append(title)
        body: list[str] = []
        _branch(graph, graph.root, step, words, "", body, {graph.root})
        lines.extend(body or ["  (nothing recorded)"])
    if graph.truncated:
        lines.append("(more nodes than shown: use --json for the graph as far as it was walked)")
    return "\n".join(lines)


def _branch(
    graph: Graph,
    node_id: str,
    step: Callable[[str], list[tuple[str, str]]],
    words: dict[str, str],
    indent: str,
    out: list[str],
    path: set[str],
) -> None:
    items = step(node_id)
    for n, (other, relation) in enumerate(items):
        last = n == len(items) - 1
        node = graph.nodes[other]
        again = other in path
        mark = " (see above)" if again else ""
        verb = words.get(relation, relation)
        out.append(f"{indent}{'└─' if last else '├─'} {verb}: {node.label}{mark}")
        if not again:
            _branch(
                graph, other, step, words, indent + ("   " if last else "│  "), out, path | {other}
            )


def render_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT, data flowing left to right; the root drawn bold."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for node in graph.nodes.values():
        style = ", style=bold" if node.id == graph.root else ""
        lines.append(f"  {quote(node.id)} [label={quote(node.label)}{style}];")
    for source, target, relation in graph.edges:
        lines.append(f"  {quote(source)} -> {quote(target)} [label={quote(relation)}];")
    lines.append("}")
    return "\n".join(lines)
