"""One suite, every binder: delivery, groups, sharing, redelivery after a crash, DLQ, partitions."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable

import pytest

from conveyor.orchestrate.streams import _input_lag as input_lag
from conveyor.streams.binders import (
    Binder,
    Consumer,
    dead_letter,
    dlq_name,
    partition_consumer,
    partitioned_lag,
    provision_partitioned,
    publish_partitioned,
)
from conveyor.streams.messages import Message, partition_of
from conveyor.streams.runtime import LaunchSpec
from tests.streams.conftest import Binders
from tests.waiting import poll

#: Bound on waiting for messages that must arrive (real brokers on a loaded machine).
PATIENCE = 30.0


def drain(consumer: Consumer, expected: int, *, ack: bool = True) -> list[Message]:
    """Receive until ``expected`` messages arrived (or the patience ran out)."""
    got: list[Message] = []

    def enough() -> bool:
        batch = consumer.receive(max_messages=50, timeout=0.5)
        if batch is not None:
            got.extend(batch.messages)
            if ack:
                consumer.ack(batch)
        return len(got) >= expected

    poll(enough, timeout=PATIENCE, interval=0)  # receive() waits; the caller asserts what came
    return got


def nothing_more(consumer: Consumer) -> bool:
    return consumer.receive(max_messages=10, timeout=0.3) is None


def messages(n: int, start: int = 0) -> list[Message]:
    return [Message({"n": i}, {"id": f"m{i}"}) for i in range(start, start + n)]


def test_a_published_batch_arrives_in_order_with_its_headers(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("g")
    binder.provision(dest, "g")
    binder.publish(dest, messages(120))
    consumer = binder.consumer(dest, "g", name="c0")
    got = drain(consumer, 120)
    assert [m.payload["n"] for m in got] == list(range(120))
    assert [m.headers["id"] for m in got[:3]] == ["m0", "m1", "m2"]
    assert nothing_more(consumer)
    consumer.close()


def test_every_group_gets_every_message(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("main", "tap")
    binder.provision(dest, "main")
    binder.provision(dest, "tap")
    binder.publish(dest, messages(30))
    for group in ("main", "tap"):
        consumer = binder.consumer(dest, group, name="c")
        assert sorted(m.payload["n"] for m in drain(consumer, 30)) == list(range(30))
        consumer.close()


def test_consumers_of_one_group_share_the_messages(binders: Binders) -> None:
    first, second = binders.open(), binders.open()
    dest = binders.destination("g")
    first.provision(dest, "g")
    a = first.consumer(dest, "g", name="a")
    b = second.consumer(dest, "g", name="b")
    first.publish(dest, messages(200))
    seen: list[int] = []
    per_consumer = {"a": 0, "b": 0}

    def all_seen() -> bool:
        for name, consumer in (("a", a), ("b", b)):
            batch = consumer.receive(max_messages=20, timeout=0.2)
            if batch:
                seen.extend(m.payload["n"] for m in batch.messages)
                per_consumer[name] += len(batch.messages)
                consumer.ack(batch)
        return len(seen) >= 200

    poll(all_seen, timeout=PATIENCE, interval=0)
    assert sorted(seen) == list(range(200))  # each once: no loss, no duplicate
    assert per_consumer["a"] > 0
    assert per_consumer["b"] > 0
    a.close()
    b.close()


_HOLDER = """
import sys
from conveyor.config import Settings
from conveyor.streams.binders import open_binder
binder = open_binder(sys.argv[1], Settings.from_env())
consumer = binder.consumer(sys.argv[2], "g", name="doomed")
got = 0
while got < 5:
    batch = consumer.receive(max_messages=5 - got, timeout=1.0)
    got += len(batch.messages) if batch else 0
print("holding", got, flush=True)
sys.stdin.read()
"""


def test_what_a_killed_consumer_held_is_delivered_again(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("g")
    binder.provision(dest, "g")
    binder.publish(dest, messages(5))
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, binders.url, dest],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "holding 5"
            holder.kill()
            holder.wait()
            # They come back to the group once it is dead (after the lease on Redis/embedded).
            survivor = binder.consumer(dest, "g", name="survivor")
            again = poll(
                lambda: survivor.receive(max_messages=10, timeout=0.5),
                timeout=PATIENCE,
                interval=0,
            )
            assert again is not None
            assert sorted(m.payload["n"] for m in again.messages) == [0, 1, 2, 3, 4]
            assert again.redelivered
            survivor.ack(again)
            assert nothing_more(survivor)
            survivor.close()
        finally:
            holder.kill()


def test_an_unacknowledged_batch_returns_when_its_consumer_closes(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("g")
    binder.provision(dest, "g")
    binder.publish(dest, messages(3))
    first = binder.consumer(dest, "g", name="first")
    assert len(drain(first, 3, ack=False)) == 3
    first.close()
    second = binders.open().consumer(dest, "g", name="second")
    assert sorted(m.payload["n"] for m in drain(second, 3)) == [0, 1, 2]
    second.close()


def test_dead_letters_carry_the_error(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("g")
    dead_letter(
        binder, dest, "g", Message({"n": 1}, {"id": "x"}), error="boom", app="filter", attempts=3
    )
    consumer = binder.consumer(dlq_name(dest), "g", name="inspector")
    (letter,) = drain(consumer, 1)
    assert letter.payload == {"n": 1}
    assert letter.headers["error"] == "boom"
    assert letter.headers["failed-app"] == "filter"
    assert letter.headers["attempts"] == 3
    assert letter.headers["id"] == "x"
    consumer.close()


def test_one_key_always_reaches_the_same_partition(binders: Binders) -> None:
    binder = binders.open()
    dest = binders.destination("g")
    provision_partitioned(binder, dest, "g", 3)
    batch = [Message({"user": f"u{i % 7}", "n": i}) for i in range(70)]
    publish_partitioned(binder, dest, batch, lambda m: m.payload["user"], 3)
    # What `stream info` shows for the app reading it: the lag of all its partitions.
    launch = LaunchSpec(
        app="transform", input=dest, group="g", input_partitioned=True, instance_count=3
    )
    assert wait_until(lambda: input_lag(binder, launch.to_json(), "s") == 70)
    seen: dict[str, int] = {}
    total = 0
    for index in range(3):
        consumer = partition_consumer(binder, dest, "g", index, 3, name=f"p{index}")
        expected = sum(1 for m in batch if partition_of(m.payload["user"], 3) == index)
        got = drain(consumer, expected)
        assert len(got) == expected
        total += len(got)
        for m in got:
            assert seen.setdefault(m.payload["user"], index) == index
        assert nothing_more(consumer)
        consumer.close()
        # What is left to read is what the instances of the other partitions have not read yet.
        assert wait_until(functools.partial(lag_is, binder, dest, 70 - total))
    assert total == 70
    assert len(set(seen.values())) > 1  # 7 keys spread over more than one partition


def test_lag_counts_what_a_group_has_not_acknowledged(binders: Binders) -> None:
    binder: Binder = binders.open()
    dest = binders.destination("g")
    assert binder.lag(dest, "g") is None
    binder.provision(dest, "g")
    binder.publish(dest, messages(7))
    assert wait_until(lambda: binder.lag(dest, "g") == 7)
    consumer = binder.consumer(dest, "g", name="c")
    drain(consumer, 7)
    assert wait_until(lambda: binder.lag(dest, "g") == 0)
    consumer.close()


def lag_is(binder: Binder, dest: str, left: int) -> bool:
    return partitioned_lag(binder, dest, "g", 3) == left


def wait_until(condition: Callable[[], bool]) -> bool:
    """RabbitMQ updates its counts a moment after a publish or an ack."""
    return poll(condition, timeout=PATIENCE)


def test_an_unknown_binder_scheme_is_refused_naming_the_known_ones() -> None:
    from conveyor.errors import UsageError
    from conveyor.streams.binders import check_binder_url, shown_binder_url

    for url in (
        "embedded",
        "embedded:///tmp/x.db",
        "redis://h:6379/0",
        "amqp://u:p@h/",
        "kafka://h:9092",
        "nats://h:4222",
    ):
        check_binder_url(url)
    for url, scheme in (
        ("kafak://h:9092", "kafak"),
        ("foo://x", "foo"),
        ("localhost:6379", "localhost"),
    ):
        with pytest.raises(UsageError) as caught:
            check_binder_url(url)
        assert f"no binder has the scheme {scheme!r}" in caught.value.message
        assert "embedded, redis" in caught.value.message
    assert (
        shown_binder_url("amqp://guest:s3cret@127.0.0.1:5672/")
        == "amqp://guest:***@127.0.0.1:5672/"
    )
