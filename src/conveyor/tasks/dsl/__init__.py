"""The composed-task DSL: tokenizer, parser, syntax tree and graph (SCDF compatible)."""

from __future__ import annotations

from conveyor.tasks.dsl.graph import Graph, Link, Node, from_graph, to_graph
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
    quote_value,
    to_text,
)
from conveyor.tasks.dsl.parser import check_task_name, parse_definition
from conveyor.tasks.errors import TaskDslError

__all__ = [
    "END",
    "FAIL",
    "App",
    "Argument",
    "Definition",
    "Element",
    "Flow",
    "Graph",
    "Link",
    "Node",
    "Split",
    "TaskDslError",
    "Transition",
    "check_task_name",
    "from_graph",
    "parse_definition",
    "quote_value",
    "to_graph",
    "to_text",
]
