"""The request and response types the server and every protocol handler work with."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conveyor.serving.errors import RequestError

__all__ = ["Request", "Response", "discard_reply", "dumps", "json_response", "loads"]

JSON = "application/json"
#: The non-standard number tokens Python's json module writes and reads.
_NON_FINITE = re.compile(rb"\bNaN\b|-?\bInfinity\b")
_JSON_TYPES = frozenset({"", JSON, "application/x-www-form-urlencoded", "text/json"})


def dumps(data: Any) -> bytes:
    """JSON bytes; NumPy arrays and scalars serialise natively (and fast) through orjson."""
    import orjson

    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(body: bytes) -> Any:
    """Parse a JSON body; RequestError (400) naming the position of a syntax error."""
    import orjson

    if not body.strip():
        raise RequestError("the request body is empty; send a JSON document", kind="bad_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    if _NON_FINITE.search(body):
        # Python's json.dumps writes NaN and Infinity by default, and pandas and MLflow
        # read them back: parse them as floats (the columns' checks then decide).
        import json

        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            pass
    raise RequestError(f"the request body is not valid JSON: {error}", kind="bad_json") from None


def discard_reply(req: Request, response: Response) -> None:
    """Where the answer to a request nobody waits for goes."""


@dataclass(slots=True, eq=False)
class Request:
    """One HTTP request, body read in full (within the size limit)."""

    method: str
    path: str
    query: str
    #: Header names lower-case; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes = b""
    request_id: str = ""
    #: Whether the connection stays open after the answer.
    keep_alive: bool = True
    #: Event-loop time of the request's first byte (its timeout counts from there).
    started: float = 0.0
    #: Set once an answer went out (or the client left): a later answer is dropped.
    answered: bool = False
    #: The protocol that answers it, once routed (a metrics label).
    protocol: str = "other"
    #: Called once with the answer; set by the server.
    reply: Callable[[Request, Response], None] = discard_reply

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case; "" when absent."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json(self, *, accept_csv: bool = False) -> Any:
        """The JSON body; 415 for a content type that is not JSON."""
        ctype = self.content_type
        # curl -d sends application/x-www-form-urlencoded unless told otherwise.
        if ctype in _JSON_TYPES or ctype.endswith("+json"):
            return loads(self.body)
        expected = "application/json or text/csv" if accept_csv else "application/json"
        raise RequestError(
            f"content type {ctype!r} is not supported here; send {expected}",
            status=415,
            kind="content_type",
        )


@dataclass(slots=True)
class Response:
    """What a handler answers: status, body bytes, media type and extra headers."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, body=dumps(data), headers=headers or {})
