"""Hand-written loops doing the stream's work straight on the broker's client library.

The floor for Python on that broker: the same three processes (generate,
transform, count), the same batches, the same JSON encoding, the same
guarantees (persistent messages, publisher confirms / acknowledged reads),
none of Conveyor's layers. Run by ``python -m bench.streams``::

    python -m bench.streams.direct BROKER gen|transform|sink URL NAME COUNT BATCH REPORT

BROKER: ``redis``, ``rabbitmq`` (pika's blocking confirms: each publish waits
for its own), ``rabbitmq-batch`` (a batch published, then its confirms
awaited together, as the Conveyor binder does), ``kafka`` (confluent-kafka:
idempotent producer, a batch flushed with acks=all, offsets committed after
the output is acknowledged) or ``nats`` (nats-py JetStream: a batch published
asynchronously and its acks awaited, explicit acks of a pulled batch).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import orjson


def events(count: int, batch: int) -> Iterator[list[bytes]]:
    """The load generator's events, encoded as Conveyor encodes them."""
    rng = random.Random(0)
    for start in range(0, count, batch):
        out = []
        for i in range(start, min(count, start + batch)):
            payload: dict[str, Any] = {
                "seq": i,
                "key": f"k{rng.randrange(100)}",
                "amount": round(rng.uniform(-50.0, 200.0), 2),
            }
            for f in range(FIELDS):
                payload[f"x{f}"] = rng.gauss(0.0, 1.0)
            out.append(orjson.dumps({"h": {"created": time.time()}, "p": payload}))
        yield out


def transform(bodies: list[bytes]) -> list[bytes]:
    out = []
    for body in bodies:
        msg = orjson.loads(body)
        p = msg["p"]
        msg["p"] = {"seq": p["seq"], "key": p["key"], "amount2": p["amount"] * 2}
        out.append(orjson.dumps(msg))
    return out


def scorer(path: str) -> Callable[[list[bytes]], list[bytes]]:
    """Score a batch with the estimator in one predict_proba call, as the score app does."""
    import numpy as np
    import skops.io

    # Fitted on a DataFrame, scored from a matrix, as the score app does: no warning per batch.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    # The benchmark's own freshly trained model: every type in it is trusted.
    est = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    names = [f"x{i}" for i in range(FIELDS)]
    classes = [str(c) for c in est.classes_]

    def score(bodies: list[bytes]) -> list[bytes]:
        msgs = [orjson.loads(b) for b in bodies]
        x = np.array([[m["p"][n] for n in names] for m in msgs], dtype=np.float64)
        proba = est.predict_proba(x)
        labels = est.classes_[proba.argmax(axis=1)]
        for m, label, row in zip(msgs, labels, proba, strict=True):
            m["p"]["prediction"] = label.item()
            m["p"]["probabilities"] = dict(zip(classes, row.tolist(), strict=True))
        return [orjson.dumps(m) for m in msgs]

    return score


#: Feature fields per event, and the model to score with (bench.streams --pipeline score sets them).
FIELDS = int(os.environ.get("BENCH_FIELDS", "4"))


def processing(report: str) -> Callable[[list[bytes]], list[bytes]]:
    """The middle stage's work, made ready (model loaded); then says so to the driver."""
    process = scorer(os.environ["BENCH_MODEL"]) if os.environ.get("BENCH_MODEL") else transform
    with open(report + ".ready", "w") as f:
        f.write("ready\n")
    return process


def joined(report: str, role: str) -> None:
    """Tell the driver this consumer reads its input (on Kafka: its group gave it partitions)."""
    with open(f"{report}.{role}.joined", "w") as f:
        f.write("joined\n")


class Counter:
    """What the throughput sink records: count, first/last arrival, latencies."""

    def __init__(self, count: int, report: str) -> None:
        self.count, self.report = count, report
        self.seen = 0
        self.first = 0.0
        self.latencies: list[float] = []

    def add(self, bodies: list[bytes]) -> bool:
        now = time.time()
        if not self.seen:
            self.first = now
        self.latencies += [now - orjson.loads(b)["h"]["created"] for b in bodies]
        self.seen += len(bodies)
        if self.seen >= self.count:
            lat = sorted(self.latencies)
            summary = {
                "count": self.seen,
                "first": self.first,
                "last": now,
                "rate": self.seen / (now - self.first) if now > self.first else None,
                "p50": lat[len(lat) // 2],
                "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            }
            with open(self.report, "wb") as f:
                f.write(orjson.dumps(summary))
            return True
        return False


def redis_role(role: str, url: str, name: str, count: int, batch: int, report: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    src, mid = f"direct:{name}.gen", f"direct:{name}.transform"
    for key in (src, mid):
        with contextlib.suppress(redis.ResponseError):  # the group exists already
            r.xgroup_create(key, name, id="0", mkstream=True)
    if role == "gen":
        for bodies in events(count, batch):
            pipe = r.pipeline(transaction=False)
            for b in bodies:
                pipe.xadd(src, {b"m": b})
            pipe.execute()
        return
    stream_in = src if role == "transform" else mid
    counter = Counter(count, report)
    process = processing(report) if role == "transform" else transform
    joined(report, role)  # the group exists: it keeps everything from now on
    while True:
        reply: Any = r.xreadgroup(name, role, {stream_in: ">"}, count=batch, block=200)
        if not reply:
            continue
        entries = reply[0][1]
        bodies = [fields[b"m"] for _, fields in entries]
        if role == "transform":
            pipe = r.pipeline(transaction=False)
            for b in process(bodies):
                pipe.xadd(mid, {b"m": b})
            pipe.execute()
        r.xack(stream_in, name, *[i for i, _ in entries])
        if role == "sink" and counter.add(bodies):
            return


class BatchConfirms:
    """Publish a batch on the channel under pika's blocking one, then await all confirms."""

    def __init__(self, conn: Any, ch: Any) -> None:
        self.conn, self.impl = conn, ch._impl
        self.sent, self.confirmed = 0, 0
        ready: list[bool] = []
        self.impl.confirm_delivery(self.on_ack, callback=lambda _f: ready.append(True))
        while not ready:
            conn.process_data_events(time_limit=0.05)

    def on_ack(self, frame: Any) -> None:
        if frame.method.NAME.endswith("Nack"):
            raise RuntimeError("the broker refused a message")
        self.confirmed = max(self.confirmed, frame.method.delivery_tag)

    def publish(self, exchange: str, bodies: list[bytes], props: Any) -> None:
        for b in bodies:
            self.impl.basic_publish(exchange, "", b, props)
        self.sent += len(bodies)
        while self.confirmed < self.sent:
            self.conn.process_data_events(time_limit=0.05)


def rabbit_role(
    role: str, url: str, name: str, count: int, batch: int, report: str, batched: bool = False
) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for stage in ("gen", "transform"):
        ch.exchange_declare(f"direct.{name}.{stage}", exchange_type="fanout", durable=True)
        ch.queue_declare(f"direct.{name}.{stage}.q", durable=True)
        ch.queue_bind(f"direct.{name}.{stage}.q", f"direct.{name}.{stage}")
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    publisher: Any = None
    pub_ch: Any = None
    confirms: BatchConfirms | None = None
    if role in ("gen", "transform"):
        publisher = pika.BlockingConnection(pika.URLParameters(url))
        pub_ch = publisher.channel()
        if batched:
            confirms = BatchConfirms(publisher, pub_ch)
        else:
            pub_ch.confirm_delivery()  # each basic_publish waits for its confirm

    def publish(exchange: str, bodies: list[bytes]) -> None:
        if confirms is not None:
            confirms.publish(exchange, bodies, props)
        else:
            for b in bodies:
                pub_ch.basic_publish(exchange, "", b, props)

    if role == "gen":
        for bodies in events(count, batch):
            publish(f"direct.{name}.gen", bodies)
        publisher.close()
        conn.close()
        return
    queue = f"direct.{name}.{'gen' if role == 'transform' else 'transform'}.q"
    buffer: list[tuple[int, bytes]] = []
    ch.basic_qos(prefetch_count=1000)
    ch.basic_consume(queue, lambda c, m, p, b: buffer.append((m.delivery_tag, b)))
    counter = Counter(count, report)
    process = processing(report) if role == "transform" else transform
    joined(report, role)
    while True:
        conn.process_data_events(time_limit=0.2 if not buffer else 0)
        if not buffer:
            continue
        taken, buffer[:] = buffer[:batch], buffer[batch:]
        bodies = [b for _, b in taken]
        if role == "transform":
            publish(f"direct.{name}.transform", process(bodies))
        ch.basic_ack(delivery_tag=taken[-1][0], multiple=True)
        if role == "sink" and counter.add(bodies):
            conn.close()
            return


def kafka_topics(url: str, name: str) -> tuple[str, str, str]:
    """(bootstrap servers, input topic, middle topic), the topics created with one partition."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    servers = url.removeprefix("kafka://").split("?", 1)[0]
    src, mid = f"direct.{name}.gen", f"direct.{name}.transform"
    admin = AdminClient({"bootstrap.servers": servers})
    # Only what is missing: Tansu adds a partition when asked to create a topic again.
    missing = [t for t in (src, mid) if t not in admin.list_topics(timeout=10).topics]
    if missing:
        futures = admin.create_topics([NewTopic(t, 1, -1) for t in missing])
        for future in futures.values():
            with contextlib.suppress(Exception):  # made by another role meanwhile
                future.result(10)
    return servers, src, mid


def kafka_role(role: str, url: str, name: str, count: int, batch: int, report: str) -> None:
    import confluent_kafka

    servers, src, mid = kafka_topics(url, name)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )

    def publish(topic: str, bodies: list[bytes]) -> None:
        for b in bodies:
            producer.produce(topic, b, partition=0)  # one partition, as the binder gives it
        if producer.flush(30):
            raise RuntimeError("records not acknowledged")

    if role == "gen":
        for bodies in events(count, batch):
            publish(src, bodies)
        return
    topic = src if role == "transform" else mid
    # A group per topic, as the binder has: one stage joining does not rebalance the other.
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": servers, "group.id": f"{name}.{topic}", "enable.auto.commit": False,
         "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
         "heartbeat.interval.ms": 1000}
    )  # fmt: skip
    consumer.subscribe([topic], on_assign=lambda _c, _p: joined(report, role))
    counter = Counter(count, report)
    process = processing(report) if role == "transform" else transform
    while True:
        records = [r for r in consumer.consume(batch, 0.2) if r.error() is None]
        if not records:
            continue
        bodies = [r.value() or b"" for r in records]
        if role == "transform":
            publish(mid, process(bodies))
        consumer.commit(asynchronous=False)
        if role == "sink" and counter.add(bodies):
            consumer.close()
            return


def nats_role(role: str, url: str, name: str, count: int, batch: int, report: str) -> None:
    import asyncio

    asyncio.run(_nats_role(role, url, name, count, batch, report))


async def _nats_role(role: str, url: str, name: str, count: int, batch: int, report: str) -> None:
    import asyncio

    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

    nc = await nats.connect(url)
    js = nc.jetstream()
    subjects = {stage: f"direct.{name}.{stage}" for stage in ("gen", "transform")}
    for stage, subject in subjects.items():
        stream = f"direct-{name}-{stage}"
        with contextlib.suppress(Exception):  # made by another role already
            await js.add_stream(name=stream, subjects=[subject], retention=RetentionPolicy.INTEREST)
        with contextlib.suppress(Exception):
            await js.add_consumer(
                stream, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT)
            )

    async def publish(subject: str, bodies: list[bytes]) -> None:
        await asyncio.gather(*[await js.publish_async(subject, b) for b in bodies])

    if role == "gen":
        for bodies in events(count, batch):
            await publish(subjects["gen"], bodies)
        await nc.close()
        return
    stage = "gen" if role == "transform" else "transform"
    sub = await js.pull_subscribe_bind(name, f"direct-{name}-{stage}")
    counter = Counter(count, report)
    process = processing(report) if role == "transform" else transform
    joined(report, role)
    while True:
        try:
            msgs = await sub.fetch(batch, timeout=0.2)
        except TimeoutError:
            continue
        bodies = [m.data for m in msgs]
        if role == "transform":
            await publish(subjects["transform"], process(bodies))
        for m in msgs:
            await m.ack()
        await nc.flush()
        if role == "sink" and counter.add(bodies):
            await nc.close()
            return


ROLES: dict[str, Callable[[str, str, str, int, int, str], None]] = {
    "redis": redis_role,
    "rabbitmq": rabbit_role,
    "rabbitmq-batch": functools.partial(rabbit_role, batched=True),
    "kafka": kafka_role,
    "nats": nats_role,
}

if __name__ == "__main__":
    broker, role, url, name, count, batch, report = sys.argv[1:8]
    ROLES[broker](role, url, name, int(count), int(batch), report)
