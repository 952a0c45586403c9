"""The stream DSL: tokenizer, parser and syntax tree (Spring Cloud Data Flow compatible)."""

from __future__ import annotations

from conveyor.streams.dsl.codes import CODES
from conveyor.streams.dsl.nodes import (
    AppNode,
    Destination,
    Option,
    StreamNode,
    quote_value,
    to_text,
)
from conveyor.streams.dsl.parser import STREAM_NAME_PATTERN, is_stream_name, parse_stream
from conveyor.streams.errors import DslError

__all__ = [
    "CODES",
    "STREAM_NAME_PATTERN",
    "AppNode",
    "Destination",
    "DslError",
    "Option",
    "StreamNode",
    "is_stream_name",
    "parse_stream",
    "quote_value",
    "to_text",
]
