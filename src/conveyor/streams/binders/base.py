"""The one small protocol every binder implements, and what they share.

A *destination* is a named channel (``<stream>.<label>``); every *consumer
group* subscribed to it receives every message once, and the consumers within
a group share the messages between them. A consumer receives a batch, and
acknowledges it once its output is published; a batch that is never
acknowledged (its consumer died) is delivered again to another consumer of the
group — at-least-once.

Example::

    binder = open_binder("embedded", settings)
    binder.provision("fraud.filter", "fraud")
    binder.publish("fraud.filter", [Message({"amount": 3})])
    consumer = binder.consumer("fraud.filter", "fraud", name="score-0")
    batch = consumer.receive(max_messages=100, timeout=1.0)
    ...  # process, publish the results
    consumer.ack(batch)

A binder that stores a message as other bytes than :func:`~conveyor.streams.messages.encode`
makes (Kafka: the payload alone, the headers travel as Kafka headers) implements
:class:`EncodingBinder`; the runtime then encodes each message it publishes with the binder's
``encode``, once, and the binder finds those bytes in ``message.wire``.

A *partitioned* destination splits its messages by key over N partitions, one
per instance of the consuming app. A binder whose destinations have partitions
of their own (Kafka) implements :class:`PartitionedBinder` and keeps the
destination one channel; on every other binder partition ``i`` is the
sub-destination ``<destination>-<i>``. The functions below pick the one or the
other, so the runtime never asks which binder it has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from conveyor.streams.messages import Message, partition_of

__all__ = [
    "Binder",
    "Consumer",
    "EncodingBinder",
    "PartitionedBinder",
    "Received",
    "dead_letter",
    "dlq_name",
    "partition_consumer",
    "partition_destination",
    "partitioned_input",
    "partitioned_lag",
    "provision_partitioned",
    "publish_partitioned",
]


@dataclass
class Received:
    """A batch handed to one consumer; pass it back to :meth:`Consumer.ack`."""

    destination: str
    messages: list[Message]
    #: The binder's own handle for acknowledging this batch.
    token: Any = field(default=None, repr=False)
    #: True when (some of) these messages were delivered before and not acknowledged.
    redelivered: bool = False


class Consumer(Protocol):
    """One member of a consumer group on one destination."""

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first."""
        ...

    def ack(self, received: Received) -> None:
        """Mark a batch done; batches are acknowledged in the order they were received."""
        ...

    def close(self) -> None:
        """Leave the group; unacknowledged batches go back to the group."""
        ...


class Binder(Protocol):
    """A message transport behind destinations (embedded log, Redis, RabbitMQ, ...)."""

    #: "embedded", "redis", "rabbitmq"
    kind: str

    def provision(self, destination: str, group: str) -> None:
        """Make sure ``group`` exists on ``destination``, so it keeps what is published from now."""
        ...

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        """Store a batch durably; returns once the broker has confirmed every message."""
        ...

    def consumer(self, destination: str, group: str, *, name: str) -> Consumer:
        """Join ``group`` on ``destination`` as consumer ``name``."""
        ...

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        """Remove a destination, its messages and the named groups' state."""
        ...

    def lag(self, destination: str, group: str) -> int | None:
        """Messages published to ``destination`` that ``group`` has not acknowledged yet.

        RabbitMQ counts only the messages waiting in the queue (not those delivered and
        unacknowledged); None when the group does not exist.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class EncodingBinder(Protocol):
    """An optional capability: the bytes this binder stores for a message are its own.

    The runtime checks a message's payload is JSON by encoding it when the message is final;
    with this method it does so in the binder's form, so the binder need not encode it again.
    """

    def encode(self, message: Message) -> bytes:
        """The bytes stored for ``message``; PayloadError when it is not JSON-compatible."""
        ...


@runtime_checkable
class PartitionedBinder(Protocol):
    """An optional capability: destinations that are partitioned by the broker itself.

    A binder with these methods keeps a partitioned destination as one destination
    of ``count`` partitions; the helpers below use them when they are present.
    """

    def provision_partitions(self, destination: str, group: str, count: int) -> None:
        """Make sure ``destination`` has at least ``count`` partitions and ``group`` exists."""
        ...

    def publish_partitions(self, destination: str, parts: Mapping[int, Sequence[Message]]) -> None:
        """Store each batch in the partition it is keyed by; returns once all are confirmed."""
        ...

    def partition_consumer(
        self, destination: str, group: str, index: int, count: int, *, name: str
    ) -> Consumer:
        """Read partition ``index`` (of ``count``) of ``destination`` alone, in ``group``."""
        ...


def dlq_name(destination: str) -> str:
    """Where messages that failed on ``destination`` go: ``<destination>.dlq``."""
    return f"{destination}.dlq"


def dead_letter(
    binder: Binder,
    destination: str,
    group: str,
    message: Message,
    *,
    error: str,
    app: str,
    attempts: int,
) -> None:
    """Send a message that failed ``attempts`` times to ``<destination>.dlq`` with the error."""
    target = dlq_name(destination)
    headers = dict(message.headers)
    headers.update({"error": error[:2000], "failed-app": app, "attempts": attempts})
    binder.provision(target, group)
    binder.publish(target, [Message(message.payload, headers)])


def partition_destination(destination: str, index: int) -> str:
    """The sub-destination that holds partition ``index`` of a partitioned destination."""
    return f"{destination}-{index}"


def partitioned_input(binder: Binder, destination: str, index: int) -> str:
    """Where instance ``index`` reads a partitioned ``destination`` (and names its DLQ after)."""
    if isinstance(binder, PartitionedBinder):
        return destination
    return partition_destination(destination, index)


def provision_partitioned(binder: Binder, destination: str, group: str, count: int) -> None:
    """Make ``group`` exist on every partition of ``destination``."""
    if isinstance(binder, PartitionedBinder):
        binder.provision_partitions(destination, group, count)
        return
    for index in range(count):
        binder.provision(partition_destination(destination, index), group)


def partition_consumer(
    binder: Binder, destination: str, group: str, index: int, count: int, *, name: str
) -> Consumer:
    """A consumer of partition ``index`` of ``count`` of ``destination`` in ``group``."""
    if isinstance(binder, PartitionedBinder):
        return binder.partition_consumer(destination, group, index, count, name=name)
    return binder.consumer(partition_destination(destination, index), group, name=name)


def partitioned_lag(binder: Binder, destination: str, group: str, count: int) -> int | None:
    """What ``group`` has not acknowledged over all ``count`` partitions; None if it has none."""
    if isinstance(binder, PartitionedBinder):
        return binder.lag(destination, group)
    lags = [binder.lag(partition_destination(destination, i), group) for i in range(count)]
    known = [lag for lag in lags if lag is not None]
    return sum(known) if known else None


def publish_partitioned(
    binder: Binder,
    destination: str,
    messages: Sequence[Message],
    key: Callable[[Message], Any],
    count: int,
) -> None:
    """Publish each message to the partition its key maps to, so one key stays on one consumer."""
    parts: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        parts[partition_of(key(message), count)].append(message)
    if isinstance(binder, PartitionedBinder):
        binder.publish_partitions(destination, parts)
        return
    for index in sorted(parts):
        binder.publish(partition_destination(destination, index), parts[index])
