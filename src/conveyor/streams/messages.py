"""Messages: a JSON-compatible payload plus headers, and their wire encoding.

Headers every message carries (set by the runtime):

- ``id``            unique id of the message (hex)
- ``created``       when the first app of the stream made it (epoch seconds, float)
- ``stream`` / ``app``  the stream and app (label) that published it last
- ``origin-stream`` / ``origin-app``  where it entered the stream system

After ``score``: ``model-digest`` (the model file's digest), ``model-run``
(the training run id, when known) and ``model-format``. In a dead-letter
destination: ``error``, ``failed-app`` and ``attempts``.

>>> m = Message({"amount": 3}, {"id": "x"})
>>> decode(encode(m)) == m
True
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from conveyor.streams.errors import PayloadError

__all__ = ["Message", "csv_records", "decode", "encode", "new_headers", "partition_of"]


@dataclass
class Message:
    """One event: ``payload`` is any JSON value; ``headers`` map names to JSON scalars."""

    payload: Any
    headers: dict[str, Any] = field(default_factory=dict)
    #: The encoded bytes, set by the runtime once payload and headers are final: those of
    #: :func:`encode`, or the binder's own (an ``EncodingBinder``: Kafka's are the payload alone).
    wire: bytes | None = field(default=None, compare=False, repr=False)


class _Ids:
    """Message ids: 16 hex digits drawn at random for this process, then a counter.

    32 hex digits like a uuid4's, and as unique for messages, without a system call and a
    UUID object per message (uuid4 cost a source more than the rest of its headers).
    """

    def __init__(self) -> None:
        self.next: Callable[[], str] = str  # replaced at once
        self.fresh()

    def fresh(self) -> None:
        template = os.urandom(8).hex() + "{:016x}"
        self.next = map(template.format, itertools.count()).__next__


_IDS = _Ids()
# A forked child draws its own prefix: it must not repeat its parent's ids.
os.register_at_fork(after_in_child=_IDS.fresh)


def new_headers(stream: str, app: str) -> dict[str, Any]:
    """Headers of a message entering the stream system at ``stream``/``app``."""
    return {
        "id": _IDS.next(),
        "created": time.time(),
        "origin-stream": stream,
        "origin-app": app,
    }


def encode(message: Message) -> bytes:
    """The message as the bytes a binder stores (one JSON object); NumPy values are allowed."""
    if message.wire is not None:
        return message.wire
    try:
        return orjson.dumps(
            {"h": message.headers, "p": message.payload}, option=orjson.OPT_SERIALIZE_NUMPY
        )
    except TypeError as exc:
        raise PayloadError(f"the message is not JSON-compatible: {exc}") from None


def decode(data: bytes | str) -> Message:
    """The inverse of :func:`encode`; a body that is not ours becomes a payload as it is."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        return Message(text, {})
    if isinstance(obj, dict) and set(obj) == {"h", "p"} and isinstance(obj["h"], dict):
        return Message(obj["p"], obj["h"])
    return Message(obj, {})


def partition_of(key: Any, count: int) -> int:
    """The partition (0..count-1) a key always goes to, the same in every process."""
    return zlib.crc32(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)) % count


def csv_records(text: str) -> list[dict[str, Any]]:
    """CSV text (a header row, then one record per row) as payloads with typed values.

    A field that reads as a whole number becomes an int, one that reads as a
    number a float, an empty field None, anything else stays text — as pandas
    reads a CSV, so a row scores as the same row sent as JSON would.

    >>> csv_records("age,name,score\\n42,Ann,0.5\\n,Bo,\\n")
    [{'age': 42, 'name': 'Ann', 'score': 0.5}, {'age': None, 'name': 'Bo', 'score': None}]
    """
    return [
        {key: _typed(value) for key, value in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


def _typed(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value
