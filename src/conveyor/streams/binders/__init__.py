"""Binders: the message transports behind destinations, all behind one protocol.

``open_binder(url, settings)`` picks one by URL:

- ``embedded`` or ``embedded:///path/to/log.db`` (default file ``$CONVEYOR_HOME/streams.db``)
- ``redis://host:port/db``
- ``amqp://user:password@host:port/vhost`` (RabbitMQ)
- ``kafka://host:9092[,host2:9092]?partitions=3&acks=all&...`` (client settings as query)
- ``nats://host:4222`` (NATS JetStream)

A ``lease=<seconds>`` query parameter sets how long a consumer may hold an
unacknowledged batch before the group hands it to another consumer
(embedded, Redis and NATS; RabbitMQ requeues when the connection drops,
Kafka hands a dead consumer's partitions over after its session timeout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from conveyor.config import Settings
from conveyor.streams.binders.base import (
    Binder,
    Consumer,
    Received,
    dead_letter,
    dlq_name,
    partition_destination,
    publish_partitioned,
)
from conveyor.streams.errors import BinderError

__all__ = [
    "Binder",
    "Consumer",
    "Received",
    "dead_letter",
    "dlq_name",
    "open_binder",
    "partition_destination",
    "publish_partitioned",
]


def _lease(query: dict[str, list[str]], url: str) -> float:
    raw = query.pop("lease", ["30"])[-1]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise BinderError(f"binder URL {url!r}: lease={raw!r} must be a positive number of seconds")
    return value


def open_binder(url: str, settings: Settings) -> Binder:
    """Connect to the binder ``url`` names; BinderError when it is unknown or unreachable."""
    parts = urlsplit(url)
    scheme = parts.scheme or parts.path  # "embedded" alone parses as a path
    query = parse_qs(parts.query)
    if scheme == "embedded":
        from conveyor.streams.binders.embedded import EmbeddedBinder

        path = Path(parts.path) if parts.scheme and parts.path else settings.home / "streams.db"
        return EmbeddedBinder(path, lease=_lease(query, url))
    if scheme in ("redis", "rediss", "unix"):
        from conveyor.streams.binders.redis import RedisBinder

        lease = _lease(query, url)
        return _imported("redis", lambda: RedisBinder(_without_lease(url), lease=lease))
    if scheme in ("amqp", "amqps"):
        from conveyor.streams.binders.rabbitmq import RabbitBinder

        return _imported("rabbitmq", lambda: RabbitBinder(_without_lease(url)))
    if scheme == "kafka":
        return _imported("kafka", lambda: _kafka(url))
    if scheme in ("nats", "tls"):
        lease = _lease(query, url)
        return _imported("nats", lambda: _nats(_without_lease(url), lease))
    raise BinderError(
        f"unknown binder {url!r}; use 'embedded', 'redis://host:port/0', "
        "'amqp://user:password@host:port/vhost', 'kafka://host:9092' or 'nats://host:4222'"
    )


def _without_lease(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, vs in parse_qs(parts.query).items() if k != "lease" for v in vs]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _kafka(url: str) -> Binder:
    from conveyor.streams.binders.kafka import KafkaBinder

    return KafkaBinder(url)


def _nats(url: str, lease: float) -> Binder:
    from conveyor.streams.binders.nats import NatsBinder

    return NatsBinder(url, lease=lease)


def _imported(extra: str, make: Callable[[], Binder]) -> Binder:
    try:
        binder = make()
    except ModuleNotFoundError as exc:
        raise BinderError(
            f"the {extra} binder needs {exc.name!r}: install conveyor[{extra}]"
        ) from exc
    return binder
