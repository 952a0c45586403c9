"""Binders: the message transports behind destinations, all behind one protocol.

``open_binder(url, settings)`` picks one by URL:

- ``embedded`` or ``embedded:///path/to/log.db`` (default file ``$CONVEYOR_HOME/streams/log.db``;
  a ``$CONVEYOR_HOME/streams.db`` from before is moved there, see :func:`embedded_log`)
- ``redis://host:port/db``
- ``amqp://user:password@host:port/vhost`` (RabbitMQ)
- ``kafka://host:9092[,host2:9092]?partitions=3&acks=all&...`` (client settings as query)
- ``nats://host:4222`` (NATS JetStream)

A ``lease=<seconds>`` query parameter sets how long a consumer may hold an
unacknowledged batch before the group hands it to another consumer
(embedded, Redis and NATS; RabbitMQ requeues when the connection drops,
Kafka hands a dead consumer's partitions over after its session timeout). The embedded
log also takes ``retention-age=<seconds>`` (default a week) and
``retention-size=<size>`` (default 1G): what it keeps, at most, for a group with
no live consumer, such as a tap whose stream is undeployed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from conveyor.config import Settings, parse_size
from conveyor.errors import ConveyorError, UsageError
from conveyor.streams.binders.base import (
    Binder,
    Consumer,
    EncodingBinder,
    PartitionedBinder,
    Received,
    dead_letter,
    dlq_name,
    partition_consumer,
    partition_destination,
    partitioned_input,
    partitioned_lag,
    provision_partitioned,
    publish_partitioned,
)
from conveyor.streams.errors import BinderError

__all__ = [
    "SCHEMES",
    "Binder",
    "Consumer",
    "EncodingBinder",
    "PartitionedBinder",
    "Received",
    "check_binder_url",
    "dead_letter",
    "dlq_name",
    "embedded_log",
    "open_binder",
    "partition_consumer",
    "partition_destination",
    "partitioned_input",
    "partitioned_lag",
    "provision_partitioned",
    "publish_partitioned",
    "shown_binder_url",
]


#: The URL schemes of every binder Conveyor knows (Kafka and NATS come with their extras).
SCHEMES = ("embedded", "redis", "rediss", "unix", "amqp", "amqps", "kafka", "nats")


def check_binder_url(url: str) -> str:
    """The scheme of binder ``url``; UsageError when no binder has it, before anything starts.

    >>> check_binder_url("redis://127.0.0.1:6379/0"), check_binder_url("embedded")
    ('redis', 'embedded')
    """
    parts = urlsplit(url)
    scheme = parts.scheme or parts.path  # "embedded" alone parses as a path
    if scheme not in SCHEMES:
        raise UsageError(
            f"unknown binder {shown_binder_url(url)!r}: no binder has the scheme "
            f"{scheme.split('/')[0]!r}; the known ones: {', '.join(SCHEMES)}",
            hint="For example --binder redis://127.0.0.1:6379/0, or leave it out for the "
            "embedded binder.",
        )
    return scheme


def shown_binder_url(url: str) -> str:
    """``url`` with its password masked, for listings and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _seconds(query: dict[str, list[str]], key: str, default: float, url: str) -> float:
    raw = query.pop(key, [str(default)])[-1]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise BinderError(f"binder URL {url!r}: {key}={raw!r} must be a positive number of seconds")
    return value


def _lease(query: dict[str, list[str]], url: str) -> float:
    return _seconds(query, "lease", 30, url)


def embedded_log(settings: Settings) -> Path:
    """The embedded binder's default log: ``$CONVEYOR_HOME/streams/log.db``.

    In a folder of its own so that isolated stream apps can be given that folder
    (read-write) without the rest of the home. A log kept in ``streams.db`` by
    an earlier release is moved there while no new one exists, with its WAL.
    """
    path = settings.home / "streams" / "log.db"
    legacy = settings.home / "streams.db"
    if legacy.exists() and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm", ""):  # the database file last: it marks the move done
            old = legacy.with_name(legacy.name + suffix)
            if old.exists():
                old.replace(path.with_name(path.name + suffix))
    return path


def open_binder(url: str, settings: Settings) -> Binder:
    """Connect to the binder ``url`` names; BinderError when it is unknown or unreachable."""
    parts = urlsplit(url)
    scheme = parts.scheme or parts.path  # "embedded" alone parses as a path
    query = parse_qs(parts.query)
    if scheme == "embedded":
        from conveyor.streams.binders.embedded import EmbeddedBinder

        path = Path(parts.path) if parts.scheme and parts.path else embedded_log(settings)
        age = _seconds(query, "retention-age", 7 * 24 * 3600, url)
        try:
            size = parse_size(query.get("retention-size", ["1G"])[-1], "retention-size")
        except ConveyorError as exc:
            raise BinderError(f"binder URL {url!r}: {exc}") from None
        return EmbeddedBinder(
            path, lease=_lease(query, url), retention_age=age, retention_bytes=size
        )
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
