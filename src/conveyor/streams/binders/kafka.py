"""The Kafka binder (confluent-kafka): a topic per destination, a Kafka consumer group per group.

A destination ``d`` is the topic ``d``, created with ``partitions`` partitions
(URL query, default 1) when it is missing; group ``g`` on it is the Kafka
consumer group ``g.d``, which starts at the beginning of a topic it has never
read (as a Redis group does). One Kafka group per stream *and* destination
keeps each app's rebalances to itself: a crashed filter does not stop the sink
of the same stream while the group waits for the dead member. The payload is
the record's value (JSON) and every message header is a Kafka header (its
JSON value), so the lineage headers can be read by any Kafka tool.

Delivery is at-least-once: the producer is idempotent with ``acks=all`` and a
publish returns once every record is acknowledged; a consumer commits a
batch's offsets only when it is acknowledged, which the stream runtime does
after the batch's output was published. The commit is sent asynchronously and
awaited before partitions are given up; receive and acknowledge run on the
runtime's one thread, so when a rebalance (a scale, an update, a crash) takes
partitions away, everything received before has been committed; a partition
whose consumer died goes to another member after the session timeout
(``lease``), from the last commit on.

Kafka keeps order per partition. Records without a key go to the partitions
in sticky runs (``sticky`` messages, default 128, one partition each, the next
run to the next partition), which keeps a run in order and still spreads a
large batch over the group's consumers — the rule of Kafka's own sticky
partitioner, counted in messages rather than bytes.

A partitioned stream (``partition-key-expression``) uses the runtime's
sub-destinations on every binder: partition ``i`` is the topic ``d-i``, read by
instance ``i``, so one key always reaches one instance.

Kafka has no "delivered before" flag: each consumer records how far it has
received in a second group, ``g.d.delivered``, and reports records below that
mark, after a rebalance, as redelivered.

URL: ``kafka://[user:password@]host:9092[,host2:9092][?settings]``; settings
are ``partitions``, ``replication`` (default: the broker's), ``sticky``,
``lease`` (seconds: the session timeout, default 6), ``timeout`` (seconds for
metadata and admin calls, default 10), and any librdkafka property
(``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location``, ``acks`` ...);
prefix one with ``producer.`` or ``consumer.`` to give it to one side only.
A user name in the URL means SASL PLAIN unless other settings say otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError, PayloadError
from conveyor.streams.messages import Message

__all__ = ["KafkaBinder", "parse_url"]

log = logging.getLogger("conveyor.streams.kafka")
T = TypeVar("T")

_OWN = {"partitions", "replication", "sticky", "lease", "timeout"}
#: Properties that only the producer knows (the consumer would warn about each).
_PRODUCER_ONLY = {"acks", "linger.ms", "compression.type", "batch.size", "delivery.timeout.ms"}
#: Commit failures that mean "the group moved these partitions on": the new owner re-reads them.
_HANDED_OVER = {"REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"}


def parse_url(url: str) -> tuple[dict[str, Any], dict[str, str], dict[str, str], dict[str, str]]:
    """Split a ``kafka://`` URL into (own settings, common, producer and consumer properties)."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise BinderError(f"binder URL {_redact(url)!r}: name the broker, e.g. kafka://host:9092")
    common: dict[str, str] = {"bootstrap.servers": hosts}
    if parts.username:
        common.update(
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": unquote(parts.username),
                "sasl.password": unquote(parts.password or ""),
            }
        )
    own: dict[str, Any] = {"partitions": 1, "replication": -1, "sticky": 128, "lease": 6.0}
    own["timeout"] = 10.0
    producer: dict[str, str] = {}
    consumer: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN:
            own[key] = _number(url, key, value, float if key in ("lease", "timeout") else int)
        elif key.startswith("producer."):
            producer[key.removeprefix("producer.")] = value
        elif key.startswith("consumer."):
            consumer[key.removeprefix("consumer.")] = value
        elif key in _PRODUCER_ONLY:
            producer[key] = value
        else:
            common[key] = value  # the client itself refuses a property it does not know
    return own, common, producer, consumer


def _number(url: str, key: str, raw: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        value = None
    # replication may be -1 (the broker's default); everything else must be positive.
    if value is None or not (value > 0 or (key == "replication" and value == -1)):
        raise BinderError(f"binder URL {_redact(url)!r}: {key}={raw!r} must be a positive number")
    return value


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _headers(message: Message) -> list[tuple[str, bytes]]:
    return [(name, orjson.dumps(value)) for name, value in message.headers.items()]


def _value(message: Message) -> bytes:
    try:
        return orjson.dumps(message.payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise PayloadError(f"the message is not JSON-compatible: {exc}") from None


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


class KafkaBinder:
    """Destinations as topics on the Kafka cluster at ``url``."""

    kind = "kafka"

    def __init__(self, url: str) -> None:
        import confluent_kafka
        from confluent_kafka.admin import AdminClient

        self.url = url
        self.shown = _redact(url)
        self.settings, common, self._producer_conf, self._consumer_conf = parse_url(url)
        self.timeout: float = self.settings["timeout"]
        self._kafka = confluent_kafka
        self._common: dict[str, Any] = {**common, "logger": log}
        self._partitions: dict[str, int] = {}
        self._producer: Any = None
        self._runs = 0  # sticky runs published: the next run goes to the next partition
        self.admin = self.client(AdminClient, {})
        try:
            self.admin.list_topics(timeout=self.timeout)
        except confluent_kafka.KafkaException as exc:
            raise BinderError(
                f"kafka binder: cannot reach {self.shown}: {exc.args[0].str()}"
            ) from exc

    def wait(self, what: str, future: Any) -> Any:
        """The result of an admin future, within the timeout, errors as BinderError."""
        try:
            return future.result(timeout=self.timeout)
        except TimeoutError as exc:
            raise BinderError(
                f"kafka binder: no answer from {self.shown} for {what} in {self.timeout:.0f}s"
            ) from exc
        except self._kafka.KafkaException as exc:
            raise BinderError(f"kafka binder: {what} failed: {exc.args[0].str()}") from exc

    def partitions(self, topic: str) -> int | None:
        """The topic's partition count, or None when it does not exist."""
        if topic not in self._partitions:
            try:
                meta = self.admin.list_topics(timeout=self.timeout)
            except self._kafka.KafkaException as exc:
                raise BinderError(f"kafka binder: metadata of {topic} failed: {exc}") from exc
            found = meta.topics.get(topic)
            if found is None or found.error is not None:
                return None
            self._partitions[topic] = len(found.partitions)
        return self._partitions[topic]

    def ensure(self, topic: str) -> int:
        """Create ``topic`` when it is missing; its partition count."""
        count = self.partitions(topic)
        if count is not None:
            return count
        from confluent_kafka.cimpl import NewTopic

        wanted = int(self.settings["partitions"])
        new = NewTopic(topic, wanted, int(self.settings["replication"]))
        futures = self.admin.create_topics([new], operation_timeout=self.timeout)
        try:
            self.wait(f"create topic {topic}", futures[topic])
        except BinderError as exc:
            if "already exists" not in str(exc).lower():
                raise BinderError(f"{exc} (topic names allow a-z A-Z 0-9 . _ -)") from exc
            self._partitions.pop(topic, None)
            return self.partitions(topic) or wanted
        self._partitions[topic] = wanted
        return wanted

    def provision(self, destination: str, group: str) -> None:
        # The group needs nothing: a new group starts at the beginning of the topic.
        self.ensure(destination)

    def producer(self) -> Any:
        if self._producer is None:
            conf = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
            self._producer = self.client(self._kafka.Producer, conf | self._producer_conf)
        return self._producer

    def client(self, kind: Callable[[dict[str, Any]], T], conf: dict[str, Any]) -> T:
        try:
            return kind({**self._common, **conf})
        except self._kafka.KafkaException as exc:
            raise BinderError(
                f"binder URL {self.shown!r}: the Kafka client refused its settings: {exc}"
            ) from exc

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        count = self.ensure(destination)
        producer = self.producer()
        failed: list[str] = []

        def delivered(error: Any, _record: Any) -> None:
            if error is not None:
                failed.append(error.str())

        sticky = int(self.settings["sticky"])
        for start in range(0, len(messages), sticky):
            partition = self._runs % count
            self._runs += 1
            for message in messages[start : start + sticky]:
                record = (_value(message), _headers(message))
                self._produce(producer, destination, partition, record, delivered)
        # Returns once the cluster has acknowledged every record (acks=all).
        left = producer.flush(max(self.timeout, 30.0))
        if left:
            raise BinderError(
                f"kafka binder: {left} record(s) to {destination} not acknowledged by "
                f"{self.shown} in time"
            )
        if failed:
            raise BinderError(
                f"kafka binder: publish to {destination} failed for {len(failed)} record(s): "
                f"{failed[0]}"
            )

    def _produce(
        self, producer: Any, topic: str, partition: int, record: Any, done: Callable[..., None]
    ) -> None:
        while True:
            try:
                producer.produce(
                    topic, record[0], partition=partition, headers=record[1], on_delivery=done
                )
                return
            except BufferError:
                # The client's queue is full: let it send (and call back) before going on.
                producer.poll(0.1)
            except self._kafka.KafkaException as exc:
                raise BinderError(f"kafka binder: publish to {topic} failed: {exc}") from exc

    def consumer(self, destination: str, group: str, *, name: str) -> KafkaConsumer:
        self.ensure(destination)
        return KafkaConsumer(self, destination, group, name)

    def consumer_conf(self, group: str, name: str) -> dict[str, Any]:
        """Settings of a consumer in the Kafka group ``group`` (already ``<group>.<topic>``)."""
        lease_ms = int(float(self.settings["lease"]) * 1000)
        return {
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": lease_ms,
            "heartbeat.interval.ms": max(100, min(1000, lease_ms // 3)),
            **self._consumer_conf,
        }

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        # The groups' offsets of a topic go with it.
        self._partitions.pop(destination, None)
        futures = self.admin.delete_topics([destination], operation_timeout=self.timeout)
        try:
            self.wait(f"delete {destination}", futures[destination])
        except BinderError as exc:
            if "unknown topic" not in str(exc).lower():
                raise

    def lag(self, destination: str, group: str) -> int | None:
        count = self.partitions(destination)
        if count is None:
            return None
        from confluent_kafka import TopicPartition

        conf = self.consumer_conf(f"{group}.{destination}", "conveyor-lag")
        reader = self.client(self._kafka.Consumer, conf)
        try:
            parts = [TopicPartition(destination, p) for p in range(count)]
            committed = reader.committed(parts, timeout=self.timeout)
            ends = self._ends(reader, parts)
        except self._kafka.KafkaException as exc:
            raise BinderError(f"kafka binder: lag of {destination} failed: {exc}") from exc
        finally:
            reader.close()
        lag = 0
        for part in committed:
            low, end = ends[part.partition]
            lag += max(0, end - (part.offset if part.offset >= 0 else low))
        return lag

    def _ends(self, reader: Any, parts: list[Any]) -> dict[int, tuple[int, int]]:
        """(first, next) offset of each partition, read from its last record batch.

        Some Kafka-protocol brokers (Tansu) report the high watermark as the last
        batch's first offset + 1; reading that batch finds its true end (on Kafka
        the batch read is the one last record).
        """
        from confluent_kafka import TopicPartition

        ends: dict[int, tuple[int, int]] = {}
        tail = []
        for part in parts:
            low, high = reader.get_watermark_offsets(part, timeout=self.timeout)
            ends[part.partition] = (low, high)
            if high > low:
                tail.append(TopicPartition(part.topic, part.partition, high - 1))
        if tail:
            reader.assign(tail)
            waiting = {part.partition for part in tail}
            deadline = time.monotonic() + self.timeout
            while waiting and time.monotonic() < deadline:
                for record in reader.consume(1000, 0.2):
                    if record.error() is None:
                        low, high = ends[record.partition()]
                        ends[record.partition()] = (low, max(high, record.offset() + 1))
                        waiting.discard(record.partition())
        return ends

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None


class KafkaConsumer:
    """A member of a Kafka consumer group, subscribed to one topic."""

    def __init__(self, binder: KafkaBinder, destination: str, group: str, name: str) -> None:
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
        try:
            self._consumer.subscribe(
                [destination], on_assign=self._assigned, on_revoke=self._revoked
            )
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
        marks = self._marks().committed(parts, timeout=self.binder.timeout)
        self._delivered = {m.partition: m.offset for m in marks if m.offset >= 0}

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        from confluent_kafka import TopicPartition

        try:
            records = self._consumer.consume(max_messages, timeout)
        except self._errors as exc:
            raise BinderError(
                f"kafka binder: receive from {self.destination} failed: {exc}"
            ) from exc
        messages: list[Message] = []
        ends: dict[int, int] = {}
        redelivered = False
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise BinderError(f"kafka binder: {self.destination}: {error.str()}")
                log.debug("kafka binder: %s: %s", self.destination, error.str())
                continue
            messages.append(_message(record))
            ends[record.partition()] = record.offset() + 1
            redelivered |= record.offset() < self._delivered.get(record.partition(), -1)
        if not messages:
            return None
        token = [TopicPartition(self.destination, p, end) for p, end in ends.items()]
        fresh = [t for t in token if t.offset > self._delivered.get(t.partition, -1)]
        if fresh:
            # Written before the batch is handed over, so a crash cannot lose the mark.
            self._commit(self._marks(), fresh, "mark delivered")
            self._delivered.update({t.partition: t.offset for t in fresh})
        return Received(self.destination, messages, token, redelivered)

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
