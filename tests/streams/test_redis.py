"""What only the Redis binder has to do: trim what every group is done with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conveyor.config import Settings
from conveyor.streams.binders.redis import RedisBinder
from conveyor.streams.messages import Message
from tests.conftest import require_service
from tests.streams.conftest import REDIS_URL


@pytest.fixture
def redis_binder() -> Iterator[RedisBinder]:
    require_service("Redis", "127.0.0.1", 6379)
    binder = RedisBinder(REDIS_URL)
    yield binder
    binder.close()


def test_entries_every_group_acknowledged_are_trimmed(
    redis_binder: RedisBinder, settings: Settings
) -> None:
    dest = f"t{uuid.uuid4().hex[:10]}"
    key = f"conveyor:{dest}"
    try:
        for group in ("fast", "slow"):
            redis_binder.provision(dest, group)
        redis_binder.publish(dest, [Message({"n": n}) for n in range(100)])
        fast = redis_binder.consumer(dest, "fast", name="f")
        for _ in range(10):
            batch = fast.receive(10, timeout=1.0)
            assert batch is not None
            fast.ack(batch)
        fast.trim()
        # The slow group has read nothing yet: everything stays.
        assert redis_binder.client.xlen(key) == 100
        slow = redis_binder.consumer(dest, "slow", name="s")
        first = slow.receive(30, timeout=1.0)
        assert first is not None
        slow.ack(first)
        held = slow.receive(10, timeout=1.0)  # delivered, not acknowledged: must stay
        assert held is not None
        slow.trim()
        assert redis_binder.client.xlen(key) == 70
        slow.ack(held)
        slow.trim()
        assert redis_binder.client.xlen(key) == 61  # the last entry handed out is kept
        assert redis_binder.lag(dest, "slow") == 60
    finally:
        redis_binder.delete(dest, [])
