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

A partitioned destination (a producer with ``partition-key-expression``, a
consumer with one instance per partition) is ONE topic of N partitions (the
``PartitionedBinder`` capability; other binders use sub-destinations ``d-i``):
the producer sends each record to partition ``partition_of(key, N)`` itself,
and instance ``i`` reads partition ``i`` by manual assignment (no rebalances;
what a larger topic has beyond N goes round the instances: ``i + k*N``), from
group ``g.d``'s commit on it, committing what it acknowledges there, so
``lag`` (the sum over the partitions) counts every instance, and an instance
that restarts resumes from its commit. A topic with fewer partitions than N is
grown (a broker that cannot grow topics is an error that says so).

Kafka has no "delivered before" flag: each consumer records how far it has
received in a second group, ``g.d.delivered``, and reports records below that
mark, after a rebalance or a restart, as redelivered (one mark covers up to
``AHEAD`` batches taken at once, see :mod:`.kafka_consumer`).

URL: ``kafka://[user:password@]host:9092[,host2:9092][?settings]``; settings
are ``partitions``, ``replication`` (default: the broker's), ``sticky``,
``lease`` (seconds: the session timeout, default 6), ``timeout`` (seconds for
metadata and admin calls, default 10), and any librdkafka property
(``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location``, ``acks`` ...);
prefix one with ``producer.`` or ``consumer.`` to give it to one side only.
A user name in the URL means SASL PLAIN unless other settings say otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from conveyor.streams.binders.kafka_consumer import KafkaConsumer
from conveyor.streams.errors import BinderError, PayloadError
from conveyor.streams.messages import Message

__all__ = ["KafkaBinder", "parse_url"]

log = logging.getLogger("conveyor.streams.kafka")
T = TypeVar("T")

_OWN = {"partitions", "replication", "sticky", "lease", "timeout"}
#: Properties that only the producer knows (the consumer would warn about each).
_PRODUCER_ONLY = {"acks", "linger.ms", "compression.type", "batch.size", "delivery.timeout.ms"}


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


def _value(message: Message) -> bytes:
    try:
        return orjson.dumps(message.payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise PayloadError(f"the message is not JSON-compatible: {exc}") from None


def _record(message: Message) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The record's value (the payload as JSON, made by the runtime already) and headers."""
    dumps = orjson.dumps
    value = message.wire if message.wire is not None else _value(message)
    try:
        return value, [(name, dumps(v)) for name, v in message.headers.items()]
    except TypeError as exc:
        raise PayloadError(f"a header of the message is not JSON-compatible: {exc}") from None


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
        #: Why records of the publish in progress were not delivered (the producer reports
        #: failures only, not one callback per record).
        self._failed: list[str] = []
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

    def ensure(self, topic: str, at_least: int | None = None) -> int:
        """Create ``topic`` when it is missing; its partition count.

        With ``at_least`` (a partitioned destination), a new topic gets exactly that many
        partitions and an existing one with fewer is grown; a broker that cannot grow
        topics is a BinderError that says so.
        """
        count = self.partitions(topic)
        if count is not None:
            if at_least is not None and count < at_least:
                return self._grow(topic, count, at_least)
            return count
        from confluent_kafka.cimpl import NewTopic

        wanted = at_least or int(self.settings["partitions"])
        new = NewTopic(topic, wanted, int(self.settings["replication"]))
        futures = self.admin.create_topics([new], operation_timeout=self.timeout)
        try:
            self.wait(f"create topic {topic}", futures[topic])
        except BinderError as exc:
            if "already exists" not in str(exc).lower():
                raise BinderError(f"{exc} (topic names allow a-z A-Z 0-9 . _ -)") from exc
            self._partitions.pop(topic, None)
            return self.ensure(topic, at_least)
        self._partitions[topic] = wanted
        return wanted

    def _grow(self, topic: str, count: int, wanted: int) -> int:
        from confluent_kafka.cimpl import NewPartitions

        futures = self.admin.create_partitions(
            [NewPartitions(topic, wanted)], operation_timeout=self.timeout
        )
        try:
            self.wait(f"add partitions to {topic}", futures[topic])
        except BinderError as exc:
            raise BinderError(
                f"kafka binder: topic {topic} has {count} partition(s) but the stream splits it "
                f"over {wanted} instances, and {self.shown} did not add partitions ({exc}); "
                f"delete the topic or give it {wanted} partitions"
            ) from exc
        self._partitions[topic] = wanted
        return wanted

    @staticmethod
    def encode(message: Message) -> bytes:
        """A record's value: the payload as JSON (the headers travel as Kafka headers)."""
        return _value(message)

    def provision(self, destination: str, group: str) -> None:
        # The group needs nothing: a new group starts at the beginning of the topic.
        self.ensure(destination)

    def producer(self) -> Any:
        if self._producer is None:
            conf = {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
            }
            self._producer = self.client(self._kafka.Producer, conf | self._producer_conf)
        return self._producer

    def _delivered(self, error: Any, _record: Any) -> None:
        if error is not None:
            self._failed.append(error.str())

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
        sticky = int(self.settings["sticky"])
        runs: list[tuple[int, Sequence[Message]]] = []
        for start in range(0, len(messages), sticky):
            runs.append((self._runs % count, messages[start : start + sticky]))
            self._runs += 1
        self._send(destination, runs)

    # -- partitioned destinations (the PartitionedBinder capability) --------------------------

    def provision_partitions(self, destination: str, group: str, count: int) -> None:
        """Partition ``i`` of a partitioned destination is partition ``i`` of its one topic."""
        self.ensure(destination, count)

    def publish_partitions(self, destination: str, parts: Mapping[int, Sequence[Message]]) -> None:
        if not parts:
            return
        self.ensure(destination, max(parts) + 1)
        self._send(destination, list(parts.items()))

    def partition_consumer(
        self, destination: str, group: str, index: int, count: int, *, name: str
    ) -> KafkaConsumer:
        total = self.ensure(destination, count)
        # A topic with more partitions than instances (made larger, or scaled down since):
        # the extra ones go round the instances, so none is left unread.
        mine = list(range(index, total, count))
        return KafkaConsumer(self, destination, group, name, partitions=mine)

    def _send(self, destination: str, runs: Sequence[tuple[int, Sequence[Message]]]) -> None:
        """Produce each run of messages to its partition; returns once all are acknowledged."""
        producer = self.producer()
        produce = producer.produce
        failed = self._failed
        failed.clear()
        for partition, messages in runs:
            for message in messages:
                value, headers = _record(message)
                try:
                    produce(destination, value, partition=partition, headers=headers)
                except BufferError:
                    self._produce(producer, destination, partition, (value, headers))
                except self._kafka.KafkaException as exc:
                    raise BinderError(
                        f"kafka binder: publish to {destination} failed: {exc}"
                    ) from exc
        # Returns once the cluster has acknowledged every record (acks=all); failures were
        # reported to _delivered meanwhile.
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

    def _produce(self, producer: Any, topic: str, partition: int, record: Any) -> None:
        """Produce once the client's queue, full now, has room again."""
        while True:
            try:
                # Let it send (and report failures) before trying again.
                producer.poll(0.1)
                producer.produce(topic, record[0], partition=partition, headers=record[1])
                return
            except BufferError:
                continue
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
