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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.streams.messages import Message, partition_of

__all__ = [
    "Binder",
    "Consumer",
    "Received",
    "dead_letter",
    "dlq_name",
    "partition_destination",
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
    for index in sorted(parts):
        binder.publish(partition_destination(destination, index), parts[index])
