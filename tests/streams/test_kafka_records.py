"""What a Kafka topic holds and hands back: records as other Kafka tools see them, read-ahead.

Against Tansu (a Kafka-protocol broker) on a free port. A consumer behind on its
input takes what the client fetched under one delivered-mark and hands it over
batch by batch; what it held and never handed over comes back flagged as
redelivered, as on RabbitMQ for a dead consumer's prefetched messages.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from conveyor.config import Settings
from conveyor.streams.messages import Message
from tests.streams.helpers import run_app
from tests.waiting import poll

PATIENCE = 30.0


def raw_records(binder: Any, topic: str, count: int) -> list[Any]:
    """The topic's first ``count`` records, read by a plain confluent-kafka consumer."""
    import confluent_kafka

    group = f"raw-{uuid.uuid4().hex[:6]}"
    reader = confluent_kafka.Consumer({**binder._common, **binder.consumer_conf(group, "raw")})
    reader.subscribe([topic])
    got: list[Any] = []

    def enough() -> bool:
        got.extend(r for r in reader.consume(count, 0.5) if r.error() is None)
        return len(got) >= count

    try:
        assert poll(enough, timeout=PATIENCE, interval=0)
    finally:
        reader.close()
    return got


def test_a_record_is_the_payload_with_every_header_a_kafka_header(
    kafka: Any, settings: Settings
) -> None:
    topic = f"r{uuid.uuid4().hex[:8]}"
    source = run_app(
        kafka, settings, app="load-generator", output=topic, stream="s",
        options={"count": "3", "fields": "0"},
    )  # fmt: skip
    try:
        records = raw_records(kafka, topic, 3)
    finally:
        source.stop()
    payloads = [orjson.loads(r.value()) for r in records]
    assert [p["seq"] for p in payloads] == [0, 1, 2]
    assert set(payloads[0]) == {"seq", "key", "amount"}  # the payload alone, no envelope
    headers = [{name: orjson.loads(value) for name, value in r.headers()} for r in records]
    assert {name: headers[0][name] for name in ("stream", "app", "origin-stream")} == {
        "stream": "s",
        "app": "load-generator",
        "origin-stream": "s",
    }
    assert isinstance(headers[0]["created"], float)
    ids = [h["id"] for h in headers]
    assert len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_records_of_another_producer_arrive_as_their_text(kafka: Any) -> None:
    import confluent_kafka

    topic = f"f{uuid.uuid4().hex[:8]}"
    kafka.provision(topic, "g")
    producer = confluent_kafka.Producer({**kafka._common})
    producer.produce(topic, b'{"n": 1}', partition=0, headers=[("trace", b'"t1"')])
    producer.produce(topic, b"plain text", partition=0, headers=[("trace", b"raw"), ("x", None)])
    producer.produce(topic, None, partition=0)
    assert producer.flush(PATIENCE) == 0
    consumer = kafka.consumer(topic, "g", name="c")
    got = poll(lambda: consumer.receive(max_messages=10, timeout=0.5), timeout=PATIENCE)
    assert got is not None
    assert [(m.payload, m.headers) for m in got.messages] == [
        ({"n": 1}, {"trace": "t1"}),
        ("plain text", {"trace": "raw", "x": None}),
        (None, {}),
    ]
    consumer.close()


def test_a_backlog_is_handed_over_in_batches_and_what_was_held_comes_back_flagged(
    kafka: Any,
) -> None:
    topic = f"b{uuid.uuid4().hex[:8]}"
    kafka.provision(topic, "g")
    kafka.publish(topic, [Message({"n": i}) for i in range(60)])  # one record batch
    first = kafka.consumer(topic, "g", name="first")
    batch = poll(lambda: first.receive(max_messages=10, timeout=0.5), timeout=PATIENCE)
    assert batch is not None
    assert [m.payload["n"] for m in batch.messages] == list(range(10))
    assert not batch.redelivered
    first.ack(batch)
    second = first.receive(max_messages=10, timeout=0.5)
    assert second is not None
    assert [m.payload["n"] for m in second.messages] == list(range(10, 20))
    # Dies with the second batch in hand and the other 40 held (read ahead, never handed over).
    first.close()
    again = kafka.consumer(topic, "g", name="again")
    seen: list[int] = []
    flagged: list[bool] = []

    def all_back() -> bool:
        got = again.receive(max_messages=10, timeout=0.5)
        if got is not None:
            seen.extend(m.payload["n"] for m in got.messages)
            flagged.append(got.redelivered)
            again.ack(got)
        return len(seen) >= 50

    assert poll(all_back, timeout=PATIENCE, interval=0)
    assert seen == list(range(10, 60))  # nothing acknowledged comes back, nothing is lost
    assert all(flagged)  # what was handed over, and what was held under the same mark
    again.close()
