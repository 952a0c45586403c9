"""A Kafka binder consumer: a member of a Kafka consumer group, or the reader of one partition.

Subscribed (a plain destination), the group spreads the topic's partitions
over its members and moves them on a rebalance; assigned (partition ``i`` of a
partitioned destination), it reads that partition alone (and any partition
``i + k*N`` a topic larger than the N instances has, so none is left unread
after a scale-down), from the group's
commit, and never takes part in a rebalance. Either way it commits only what
was acknowledged, and marks what it received in ``<group>.<topic>.delivered``
so that a record read again after a crash or a restart comes back flagged as
redelivered.

The mark is committed (and awaited) before any record it covers is handed
over. Behind on its input, a consumer takes what the client has fetched
already, up to ``AHEAD`` batches, marks it once and hands it over batch by
batch: one round trip to the broker per ``AHEAD`` batches instead of one per
batch. Records it held but had not handed over when it died come back flagged
too, as RabbitMQ flags what a dead consumer had prefetched.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message

if TYPE_CHECKING:
    from conveyor.streams.binders.kafka import KafkaBinder

__all__ = ["KafkaConsumer"]

log = logging.getLogger("conveyor.streams.kafka")

#: Commit failures that mean "the group moved these partitions on": the new owner re-reads them.
_HANDED_OVER = {"REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"}

#: Batches a consumer behind on its input takes from the client at once, under one mark.
AHEAD = 10


def _json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Records from other producers need not be JSON: deliver the text as it is.
        return data.decode("utf-8", "replace")


def _message(record: Any) -> Message:
    headers = {name: _json(value) for name, value in record.headers() or ()}
    return Message(_json(record.value()), headers)


def _messages(records: list[Any]) -> list[Message]:
    """The records as messages: value and every header decoded as JSON (as the binder wrote).

    A batch with a null, empty or non-JSON value or header (another producer's) is decoded
    the slow way: such a value as its text.
    """
    loads = orjson.loads
    try:
        return [
            Message(loads(r.value()), {name: loads(v) for name, v in r.headers() or ()})
            for r in records
        ]
    except orjson.JSONDecodeError:
        return [_message(r) for r in records]


class KafkaConsumer:
    """A member of a Kafka consumer group on one topic; with ``partitions``, those ones only."""

    def __init__(
        self,
        binder: KafkaBinder,
        destination: str,
        group: str,
        name: str,
        partitions: list[int] | None = None,
    ) -> None:
        self.binder = binder
        self.destination = destination
        self.group = group
        self.name = name
        self._errors = binder._kafka.KafkaException
        self._consumer: Any = binder.client(
            binder._kafka.Consumer, binder.consumer_conf(f"{group}.{destination}", name)
        )
        self._marker: Any = None  # a consumer of "<group>.delivered", made on first use
        #: Per partition: records below this offset were delivered before (to anyone).
        self._delivered: dict[int, int] = {}
        #: Per partition: the offset acknowledged last (committed asynchronously).
        self._acked: dict[int, Any] = {}
        #: Records taken from the client and marked delivered but not handed over yet, oldest
        #: first: (record, partition, offset, whether it was delivered before).
        self._held: deque[tuple[Any, int, int, bool]] = deque()
        try:
            if partitions is None:
                self._consumer.subscribe(
                    [destination], on_assign=self._assigned, on_revoke=self._revoked
                )
            else:
                from confluent_kafka import TopicPartition

                # No offset given: the client starts from the group's commit on each.
                parts = [TopicPartition(destination, p) for p in partitions]
                self._consumer.assign(parts)
                self._assigned(self._consumer, parts)
        except self._errors as exc:
            raise BinderError(f"kafka binder: cannot consume {destination}: {exc}") from exc

    def _marks(self) -> Any:
        if self._marker is None:
            kafka_group = f"{self.group}.{self.destination}.delivered"
            conf = self.binder.consumer_conf(kafka_group, f"{self.name}-marks")
            self._marker = self.binder.client(self.binder._kafka.Consumer, conf)
        return self._marker

    def _assigned(self, _consumer: Any, parts: list[Any]) -> None:
        if not parts:
            count = self.binder.partitions(self.destination)
            log.warning(
                "kafka binder: %s got no partition of %s (it has %s, all taken by other "
                "consumers of group %s): this instance will idle; give the topic as many "
                "partitions as instances (kafka://...?partitions=N for new topics)",
                self.name, self.destination, count, self.group,
            )  # fmt: skip
            return
        log.info(
            "kafka binder: %s reads partition(s) %s of %s",
            self.name, ", ".join(str(p.partition) for p in parts), self.destination,
        )  # fmt: skip
        marks = self._marks().committed(parts, timeout=self.binder.timeout)
        self._delivered = {m.partition: m.offset for m in marks if m.offset >= 0}

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        from confluent_kafka import TopicPartition

        if not self._held:
            self._fetch(max_messages, timeout)
            if not self._held:
                return None
        held = self._held
        taken = [held.popleft() for _ in range(min(max_messages, len(held)))]
        # A partition's records come in order: its last one ends the batch there.
        ends = {partition: offset + 1 for _, partition, offset, _ in taken}
        token = [TopicPartition(self.destination, p, end) for p, end in ends.items()]
        redelivered = any(item[3] for item in taken)
        messages = _messages([item[0] for item in taken])
        return Received(self.destination, messages, token, redelivered)

    def _fetch(self, max_messages: int, timeout: float) -> None:
        """Take records from the client, mark them delivered, and hold them to hand over."""
        from confluent_kafka import TopicPartition

        records = self._consume(max_messages, timeout)
        if len(records) >= max_messages:
            # Behind: what the client has fetched already, without waiting, under the same mark.
            records += self._consume((AHEAD - 1) * max_messages, 0)
        fetched: list[tuple[Any, int, int, bool]] = []
        ends: dict[int, int] = {}
        delivered = self._delivered
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise BinderError(f"kafka binder: {self.destination}: {error.str()}")
                log.debug("kafka binder: %s: %s", self.destination, error.str())
                continue
            partition, offset = record.partition(), record.offset()
            fetched.append((record, partition, offset, offset < delivered.get(partition, -1)))
            ends[partition] = offset + 1
        fresh = [
            TopicPartition(self.destination, p, end)
            for p, end in ends.items()
            if end > delivered.get(p, -1)
        ]
        if fresh:
            # Written before any of these records is handed over, so a crash cannot lose it.
            self._commit(self._marks(), fresh, "mark delivered")
            delivered.update({t.partition: t.offset for t in fresh})
        self._held.extend(fetched)

    def _consume(self, count: int, timeout: float) -> list[Any]:
        try:
            records: list[Any] = self._consumer.consume(count, timeout)
        except self._errors as exc:
            raise BinderError(
                f"kafka binder: receive from {self.destination} failed: {exc}"
            ) from exc
        return records

    def _commit(self, client: Any, offsets: list[Any], what: str) -> None:
        """Commit and wait; a group that moved the partitions on is a warning, not an error."""
        try:
            client.commit(offsets=offsets, asynchronous=False)
        except self._errors as exc:
            error = exc.args[0]
            if error.name() in _HANDED_OVER:
                log.warning(
                    "kafka binder: %s: %s lost its partitions to a rebalance before the "
                    "commit; their new owner receives the batch again",
                    self.destination, self.name,
                )  # fmt: skip
                return
            raise BinderError(f"kafka binder: {what} on {self.destination}: {error.str()}") from exc

    def _revoked(self, _consumer: Any, parts: list[Any]) -> None:
        """Before partitions go to another member: make sure what was acknowledged is committed."""
        gone = {p.partition for p in parts}
        # Held records of those partitions are their new owner's (nothing is held while the
        # client is asked for more, when this runs; kept safe all the same).
        self._held = deque(item for item in self._held if item[1] not in gone)
        done = [self._acked.pop(p.partition) for p in parts if p.partition in self._acked]
        if done:
            self._commit(self._consumer, done, "commit before a rebalance")

    def ack(self, received: Received) -> None:
        # Asynchronous: the commit is awaited when partitions are revoked (and on close), and
        # a commit lost to a crash only means the batch is delivered again.
        for part in received.token:
            self._acked[part.partition] = part
        try:
            self._consumer.commit(offsets=received.token, asynchronous=True)
        except self._errors as exc:
            raise BinderError(f"kafka binder: ack on {self.destination}: {exc}") from exc

    def close(self) -> None:
        """Leave the group at once; what was not acknowledged goes to the other members."""
        self._held.clear()
        acked, self._acked = list(self._acked.values()), {}
        if acked:
            with contextlib.suppress(BinderError):
                self._commit(self._consumer, acked, "commit on close")
        for client in (self._consumer, self._marker):
            if client is not None:
                try:
                    client.close()
                except (self._errors, RuntimeError) as exc:
                    log.debug("kafka binder: closing %s: %s", self.name, exc)
