"""Streams: pipelines written in a Unix-pipe DSL, run app by app over a message binder.

Layout: ``dsl/`` (tokenizer, parser, syntax tree), ``catalogue`` (the built-in
apps and their options; validation of a parsed stream), ``expressions`` (the
safe expression language), ``messages``, ``binders/`` (embedded, Redis,
RabbitMQ behind one protocol), ``apps/`` (what each built-in app does),
``runtime`` (runs one app over a binder), ``run`` (its command line:
``python -m conveyor.streams.run``) and ``status`` (its /health and /status).

>>> from conveyor.streams import parse_stream, validate_stream
>>> d = "http --path=/tx | filter --expression='amount > 0' | log"
>>> [a.spec.role.value for a in validate_stream(parse_stream(d), d)]
['source', 'processor', 'sink']
"""

from __future__ import annotations

from conveyor.streams.binders import Binder, Consumer, Received, open_binder
from conveyor.streams.catalogue import CATALOGUE, AppSpec, OptionSpec, Role, validate_stream
from conveyor.streams.dsl import StreamNode, parse_stream, to_text
from conveyor.streams.errors import BinderError, DslError, ExpressionError, StreamError
from conveyor.streams.expressions import compile_expression
from conveyor.streams.messages import Message
from conveyor.streams.runtime import AppState, LaunchSpec, StreamAppRuntime

__all__ = [
    "CATALOGUE",
    "AppSpec",
    "AppState",
    "Binder",
    "BinderError",
    "Consumer",
    "DslError",
    "ExpressionError",
    "LaunchSpec",
    "Message",
    "OptionSpec",
    "Received",
    "Role",
    "StreamAppRuntime",
    "StreamError",
    "StreamNode",
    "compile_expression",
    "open_binder",
    "parse_stream",
    "to_text",
    "validate_stream",
]
