"""Partitioned streams on Kafka use Kafka partitions: one topic of N partitions, no ``d-i`` topics.

Run against Tansu (a Kafka-protocol broker) on a free port; what is checked is
what a user sees: which instance gets which key, the topics the broker holds
(through the admin client), and where a restarted instance resumes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import (
    Binder,
    PartitionedBinder,
    partition_consumer,
    partitioned_lag,
    provision_partitioned,
    publish_partitioned,
)
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message, partition_of
from tests.streams.helpers import Running, collect, run_app
from tests.streams.test_binders import drain, nothing_more
from tests.waiting import poll

PATIENCE = 30.0


def topics(binder: Any) -> dict[str, int]:
    """The broker's topics and their partition counts, as its admin client lists them."""
    meta = binder.admin.list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in meta.topics.items()}


def keyed(n: int, keys: int, start: int = 0) -> list[Message]:
    return [Message({"user": f"u{i % keys}", "n": i}) for i in range(start, start + n)]


def by_user(message: Message) -> Any:
    return message.payload["user"]


def partition_worker(kafka: Binder, settings: Settings, stream: str, index: int) -> Running:
    """Instance ``index`` of 3 of a transform reading the partitioned ``<stream>.gen``."""
    return run_app(
        kafka, settings, app="transform", input=f"{stream}.gen", output=f"{stream}.out{index}",
        group=stream, stream=stream, options={"expression": "key"},
        input_partitioned=True, instance_index=index, instance_count=3,
    )  # fmt: skip


def test_a_partitioned_stream_is_one_topic_and_one_key_reaches_one_instance(
    kafka: Binder, settings: Settings
) -> None:
    stream = f"p{uuid.uuid4().hex[:8]}"
    source = run_app(
        kafka, settings, app="load-generator", output=f"{stream}.gen", stream=stream,
        options={"count": "300", "keys": "11"}, partition_key="key", partition_count=3,
    )  # fmt: skip
    workers = [partition_worker(kafka, settings, stream, i) for i in range(3)]
    try:
        assert poll(lambda: sum(w.runtime.published for w in workers) >= 300, timeout=PATIENCE)
    finally:
        source.stop()
        for worker in workers:
            worker.stop()
    counts = [w.runtime.published for w in workers]
    assert sum(counts) == 300
    keys = [
        {m.payload for m in collect(kafka, f"{stream}.out{i}", f"{stream}-check", counts[i])}
        for i in range(3)
    ]
    for i, seen in enumerate(keys):
        assert seen  # every instance got a share of the 11 keys
        assert {partition_of(key, 3) for key in seen} == {i}  # and only its partition's keys
    assert len(set().union(*keys)) == 11
    held = topics(kafka)
    assert held[f"{stream}.gen"] == 3
    assert not [name for name in held if name.startswith(f"{stream}.gen-")]
    assert [w.runtime.input_destination for w in workers] == [f"{stream}.gen"] * 3


def test_an_instance_restarted_resumes_from_its_commit(kafka: Binder) -> None:
    assert isinstance(kafka, PartitionedBinder)
    dest = f"r{uuid.uuid4().hex[:8]}"
    provision_partitioned(kafka, dest, "g", 2)
    batch = keyed(40, 5)
    publish_partitioned(kafka, dest, batch, by_user, 2)
    mine = [m.payload["n"] for m in batch if partition_of(m.payload["user"], 2) == 1]
    first = partition_consumer(kafka, dest, "g", 1, 2, name="worker-1")
    assert [m.payload["n"] for m in drain(first, len(mine))] == mine
    first.close()
    # The other instance has read nothing yet: the lag is its partition, all of it.
    assert poll(lambda: partitioned_lag(kafka, dest, "g", 2) == 40 - len(mine), timeout=PATIENCE)

    more = keyed(20, 5, start=40)
    publish_partitioned(kafka, dest, more, by_user, 2)
    later = [m.payload["n"] for m in more if partition_of(m.payload["user"], 2) == 1]
    again = partition_consumer(kafka, dest, "g", 1, 2, name="worker-1")
    received = poll(lambda: again.receive(max_messages=100, timeout=0.5), timeout=PATIENCE)
    assert received is not None
    assert [m.payload["n"] for m in received.messages] == later  # nothing acked comes back
    assert not received.redelivered
    again.close()  # without acknowledging: the next one gets the batch again, flagged
    third = partition_consumer(kafka, dest, "g", 1, 2, name="worker-1")
    redelivered = poll(lambda: third.receive(max_messages=100, timeout=0.5), timeout=PATIENCE)
    assert redelivered is not None
    assert [m.payload["n"] for m in redelivered.messages] == later
    assert redelivered.redelivered
    third.ack(redelivered)
    assert nothing_more(third)
    third.close()


def test_a_topic_with_too_few_partitions_that_cannot_grow_is_named(kafka: Binder) -> None:
    dest = f"f{uuid.uuid4().hex[:8]}"
    kafka.provision(dest, "g")  # a plain destination: one partition (the URL's default)
    # Tansu cannot add partitions to a topic (a real Kafka grows it to 3 instead).
    with pytest.raises(BinderError) as caught:
        provision_partitioned(kafka, dest, "g", 3)
    assert f"topic {dest} has 1 partition(s) but the stream splits it over 3" in str(caught.value)
    assert "give it 3 partitions" in str(caught.value)
    assert topics(kafka)[dest] == 1


def test_partitions_beyond_the_instances_go_round_them(kafka: Binder) -> None:
    assert isinstance(kafka, PartitionedBinder)
    dest = f"w{uuid.uuid4().hex[:8]}"
    provision_partitioned(kafka, dest, "g", 4)  # as deployed with 4 instances, now 2
    kafka.publish_partitions(dest, {p: [Message({"p": p})] for p in range(4)})
    for index, expected in ((0, [0, 2]), (1, [1, 3])):
        consumer = partition_consumer(kafka, dest, "g", index, 2, name=f"w{index}")
        assert sorted(m.payload["p"] for m in drain(consumer, 2)) == expected
        assert nothing_more(consumer)
        consumer.close()
    assert topics(kafka)[dest] == 4
    assert poll(lambda: partitioned_lag(kafka, dest, "g", 2) == 0, timeout=PATIENCE)
