"""Processors: filter, transform, split, router, http-request and python."""

from __future__ import annotations

import importlib
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson

from conveyor.streams.apps.base import AppContext, Routed
from conveyor.streams.errors import ExpressionError, StreamError
from conveyor.streams.expressions import Expression
from conveyor.streams.messages import Message

__all__ = ["Filter", "HttpRequest", "PythonFunction", "Router", "Split", "Transform"]


def _values(expression: Expression, messages: list[Message]) -> list[Any]:
    """The expression over a batch; the first failing message fails the batch (retried singly)."""
    values = expression.evaluate_batch([(m.payload, m.headers) for m in messages])
    for value in values:
        if isinstance(value, ExpressionError):
            raise value
    return values


class Filter:
    def __init__(self, context: AppContext) -> None:
        self.expression: Expression = context.options["expression"]

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        keep = _values(self.expression, messages)
        return [m for m, k in zip(messages, keep, strict=True) if k]

    def close(self) -> None:
        pass


class Transform:
    def __init__(self, context: AppContext) -> None:
        self.expression: Expression = context.options["expression"]
        self.merge: bool = context.options["merge"]

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        out: list[Message | Routed] = []
        for m, value in zip(messages, _values(self.expression, messages), strict=True):
            payload = value
            if self.merge:
                if not isinstance(value, dict) or not isinstance(m.payload, dict):
                    raise StreamError(
                        "transform --merge=true needs a dict result and a dict payload"
                    )
                payload = {**m.payload, **value}
            out.append(Message(payload, dict(m.headers)))
        return out

    def close(self) -> None:
        pass


class Split:
    def __init__(self, context: AppContext) -> None:
        self.expression: Expression = context.options["expression"]

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        out: list[Message | Routed] = []
        for m, items in zip(messages, _values(self.expression, messages), strict=True):
            if not isinstance(items, list):
                raise StreamError(
                    f"split: the expression gave a {type(items).__name__}, not a list"
                )
            out += [Message(item, {**m.headers, "split-index": i}) for i, item in enumerate(items)]
        return out

    def close(self) -> None:
        pass


class Router:
    def __init__(self, context: AppContext) -> None:
        self.expression: Expression = context.options["expression"]
        self.default: str = context.options["default-destination"]

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        out: list[Message | Routed] = []
        for m, target in zip(messages, _values(self.expression, messages), strict=True):
            name = str(target) if target not in (None, "") else self.default
            if name:
                out.append(Routed(name, m))
        return out

    def close(self) -> None:
        pass


class HttpRequest:
    """One request per message (JSON body); the JSON reply goes into ``--result``."""

    def __init__(self, context: AppContext) -> None:
        self.o = context.options
        if not str(self.o["url"]).startswith(("http://", "https://")):
            raise StreamError(f"http-request: --url={self.o['url']!r} must start with http(s)://")

    def _call(self, payload: Any) -> Any:
        data = None if self.o["method"] == "GET" else orjson.dumps(payload)
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            self.o["url"], data=data, method=self.o["method"],
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.o["timeout"]) as reply:  # noqa: S310
                body = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise StreamError(
                f"http-request: {self.o['url']} answered {exc.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StreamError(f"http-request: {self.o['url']} failed: {exc}") from None
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return body.decode("utf-8", "replace")

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        out: list[Message | Routed] = []
        for m in messages:
            reply = self._call(m.payload)
            payload = (
                {**m.payload, self.o["result"]: reply} if isinstance(m.payload, dict) else reply
            )
            out.append(Message(payload, dict(m.headers)))
        return out

    def close(self) -> None:
        pass


def load_function(reference: str) -> Callable[..., Any]:
    """``module:function`` (the user's own code, on the app's path) -> the function."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise StreamError(f"python: --function={reference!r} must look like module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StreamError(f"python: cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise StreamError(f"python: {reference!r} is not a function in {module_name!r}")
    fn: Callable[..., Any] = target
    return fn


class PythonFunction:
    """Calls ``f(payload)`` per message (or ``f([payloads])`` with --batch=true).

    The result is the new payload; a list gives several messages; None drops the message.
    """

    def __init__(self, context: AppContext) -> None:
        self.fn = load_function(context.options["function"])
        self.batch: bool = context.options["batch"]

    @staticmethod
    def _emit(result: Any, headers: dict[str, Any]) -> list[Message | Routed]:
        if result is None:
            return []
        items = result if isinstance(result, list) else [result]
        return [Message(item, dict(headers)) for item in items]

    def process(self, messages: list[Message]) -> list[Message | Routed]:
        if not self.batch:
            out: list[Message | Routed] = []
            for m in messages:
                out += self._emit(self.fn(m.payload), m.headers)
            return out
        results = self.fn([m.payload for m in messages])
        if not isinstance(results, list) or len(results) != len(messages):
            raise StreamError(
                "python --batch=true: the function must return one result per payload"
            )
        out = []
        for m, result in zip(messages, results, strict=True):
            out += self._emit(result, m.headers)
        return out

    def close(self) -> None:
        pass
