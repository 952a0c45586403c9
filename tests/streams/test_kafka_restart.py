"""A Kafka broker restarted mid-stream: the stream keeps going and nothing is lost (at-least-once).

Tansu's memory storage forgets every topic when it stops, so this broker keeps
its log in a SeaweedFS bucket (Tansu's S3 storage engine) and is killed -9 and
started again on the same port, the only address the clients know.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder, open_binder
from conveyor.streams.messages import Message
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.streams.helpers import Running
from tests.waiting import poll

if TYPE_CHECKING:
    from tests.s3_server import SeaweedFS
    from tests.tansu import Tansu

pytestmark = [pytest.mark.slow, pytest.mark.s3]

PATIENCE = 60.0


@pytest.fixture
def durable_tansu(seaweedfs: SeaweedFS) -> Iterator[Tansu]:
    """Tansu on a free port with its topics, records and offsets in a bucket of its own."""
    from tests.tansu import Tansu

    bucket = f"tansu-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    env = {
        "AWS_ENDPOINT": seaweedfs.endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        broker = Tansu(storage=f"s3://{bucket}/", env=env)
    except (ImportError, OSError, RuntimeError) as exc:
        reason = f"Tansu did not start on SeaweedFS storage: {exc}"
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    yield broker
    broker.stop()


def app(url: str, settings: Settings, **spec: Any) -> Running:
    """A stream app instance with a binder of its own, as the platform starts one."""
    runtime = StreamAppRuntime(LaunchSpec(binder=url, stream="s", group="s", **spec), settings)
    runtime.start()
    return Running(runtime)


def batch(start: int, count: int) -> list[Message]:
    return [
        Message({"user": f"u{n % 7}", "n": n}, {"id": f"m{n}"}) for n in range(start, start + count)
    ]


def test_a_stream_keeps_going_across_a_broker_restart(
    durable_tansu: Tansu, settings: Settings
) -> None:
    url = f"{durable_tansu.url}?partitions=2"
    # s.in -> copy (one group member, output partitioned by user) -> s.mid (2 partitions)
    #      -> pick-0, pick-1 (partition i each) -> s.out
    apps = [
        app(url, settings, app="transform", label="copy", input="s.in", output="s.mid",
            options={"expression": "payload"}, partition_key="user", partition_count=2),
        *(app(url, settings, app="transform", label="pick", input="s.mid", output="s.out",
              options={"expression": "n"}, input_partitioned=True, instance_index=i,
              instance_count=2) for i in range(2)),
    ]  # fmt: skip
    feeder: Binder = open_binder(url, settings)
    feeder.provision("s.in", "s")
    feeder.provision("s.out", "check")
    reader = feeder.consumer("s.out", "check", name="check")
    seen: set[int] = set()

    def arrived(count: int) -> bool:
        received = reader.receive(max_messages=200, timeout=0.5)
        if received is not None:
            seen.update(m.payload for m in received.messages)
            reader.ack(received)
        return len(seen) >= count

    try:
        feeder.publish("s.in", batch(0, 60))
        poll(lambda: arrived(60), timeout=PATIENCE, interval=0)
        assert seen == set(range(60))

        feeder.publish("s.in", batch(60, 60))  # acknowledged by the broker, maybe not processed
        before = durable_tansu.process.pid
        durable_tansu.restart()  # kill -9, then the same port again
        assert durable_tansu.process.pid != before
        feeder.publish("s.in", batch(120, 60))
        poll(lambda: arrived(180), timeout=PATIENCE, interval=0)
        assert seen == set(range(180))  # every message made it through, once or more
        assert all(a.runtime.state.value == "running" for a in apps)
        held = feeder.admin.list_topics(timeout=10).topics  # type: ignore[attr-defined]
        assert len(held["s.mid"].partitions) == 2  # one topic of 2 partitions, kept
        assert "s.mid-0" not in held
    finally:
        reader.close()
        feeder.close()
        for running in apps:
            running.stop()
