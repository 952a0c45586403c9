"""Bad binder URLs and brokers that do not answer: a clear BinderError naming the URL, no hang."""

from __future__ import annotations

import logging
import re
import socket
import sys
import time
import uuid

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import open_binder
from conveyor.streams.binders.kafka import parse_url
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message
from tests.conftest import kafka_url


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["kafka", "nats"])
def test_a_broker_that_does_not_answer_is_named(scheme: str, settings: Settings) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}"
    with pytest.raises(BinderError, match="cannot reach") as caught:
        open_binder(url, settings)
    assert url in str(caught.value)


@pytest.mark.parametrize(("scheme", "module"), [("kafka", "confluent_kafka"), ("nats", "nats")])
def test_a_missing_client_library_names_the_extra_to_install(
    scheme: str, module: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BinderError, match=rf"install conveyor\[{scheme}\]"):
        open_binder(f"{scheme}://127.0.0.1:{closed_port()}", settings)


def test_kafka_settings_come_from_the_url() -> None:
    own, common, producer, consumer = parse_url(
        "kafka://app:s%40cret@k1:9092,k2:9092?partitions=6&acks=1"
        "&producer.linger.ms=20&consumer.fetch.min.bytes=1000&ssl.ca.location=/ca.pem"
    )
    assert own["partitions"] == 6
    assert common["bootstrap.servers"] == "k1:9092,k2:9092"
    assert (common["sasl.username"], common["sasl.password"]) == ("app", "s@cret")
    assert common["ssl.ca.location"] == "/ca.pem"
    assert producer == {"acks": "1", "linger.ms": "20"}
    assert consumer == {"fetch.min.bytes": "1000"}


@pytest.mark.parametrize(
    ("query", "message"),
    [("partitions=0", "partitions='0' must be a positive number"),
     ("frob=1", 'No such configuration property: "frob"'),
     ("no.such.property=1", "refused its settings")],
)  # fmt: skip
def test_bad_kafka_settings_are_named(query: str, message: str, settings: Settings) -> None:
    with pytest.raises(BinderError, match=re.escape(message)) as caught:
        open_binder(f"kafka://user:secret@127.0.0.1:{closed_port()}?{query}", settings)
    assert "secret" not in str(caught.value)


def test_kafka_names_the_instances_a_topic_with_too_few_partitions_leaves_idle(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = kafka_url()  # a topic of one partition, two consumers in the group
    binder = open_binder(url, settings)
    dest = f"idle{uuid.uuid4().hex[:8]}"
    group = f"g{dest}"  # a group of its own: Tansu mixes up a group shared with later tests
    binder.provision(dest, group)
    binder.publish(dest, [Message({"n": n}) for n in range(10)])
    consumers = [binder.consumer(dest, group, name=f"s-score-{i}") for i in range(2)]
    got = 0
    deadline = time.monotonic() + 30
    with caplog.at_level(logging.WARNING, "conveyor.streams.kafka"):
        while (got < 10 or "will idle" not in caplog.text) and time.monotonic() < deadline:
            for consumer in consumers:
                batch = consumer.receive(10, timeout=0.2)
                if batch:
                    got += len(batch.messages)
                    consumer.ack(batch)
    try:
        assert got == 10
        (idle,) = [r.getMessage() for r in caplog.records if "will idle" in r.getMessage()]
        assert re.search(r"s-score-[01] got no partition of " + dest, idle)
    finally:
        for consumer in consumers:
            consumer.close()
        binder.delete(dest, [group])
        binder.close()
