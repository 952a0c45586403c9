"""The Redis binder: one Redis Stream per destination, consumer groups for groups.

A destination ``d`` is the stream key ``conveyor:d``; a group is a Redis
consumer group created at the start of the stream (so it keeps everything
published after it was provisioned). Consumers read with ``XREADGROUP`` and
acknowledge with ``XACK``; messages a dead consumer left pending longer than
``lease`` seconds are taken over with ``XAUTOCLAIM`` and delivered again.
Every so often a consumer trims the stream (``XTRIM MINID``) below the oldest
entry some group still needs: its oldest pending entry, or else the last one
it was handed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message, decode, encode

__all__ = ["RedisBinder"]

_FIELD = b"m"
#: A consumer trims its stream after this many acknowledgements.
_TRIM_EVERY = 64


def _key(destination: str) -> str:
    return f"conveyor:{destination}"


class RedisBinder:
    """Destinations as Redis Streams on the server at ``url``."""

    kind = "redis"

    def __init__(self, url: str, *, lease: float = 30.0) -> None:
        import redis

        self.url = url
        self.lease = lease
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
            self.client.ping()
        except redis.RedisError as exc:
            raise BinderError(f"redis binder: cannot reach {url}: {exc}") from exc

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call, translating Redis errors into BinderError."""
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise BinderError(f"redis binder: {what} failed: {exc}") from exc

    def provision(self, destination: str, group: str) -> None:
        try:
            self.client.xgroup_create(_key(destination), group, id="0", mkstream=True)
        except self._errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise BinderError(f"redis binder: cannot create group {group!r}: {exc}") from exc

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        key = _key(destination)
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(key, {_FIELD: encode(message)})
        self.call(f"publish to {destination}", pipe.execute)

    def consumer(self, destination: str, group: str, *, name: str) -> RedisConsumer:
        self.provision(destination, group)
        return RedisConsumer(self, destination, group, name)

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        self.call(f"delete {destination}", self.client.delete, _key(destination))

    def lag(self, destination: str, group: str) -> int | None:
        try:
            groups = self.client.xinfo_groups(_key(destination))
        except self._errors as exc:
            if "no such key" in str(exc).lower():
                return None
            raise BinderError(f"redis binder: lag of {destination} failed: {exc}") from exc
        for info in groups:
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == group:
                waiting = info.get("lag")
                # Redis cannot count the lag after entries were deleted; it says None then.
                return None if waiting is None else int(waiting) + int(info.get("pending", 0))
        return None

    def close(self) -> None:
        self.client.close()


def _id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisConsumer:
    def __init__(self, binder: RedisBinder, destination: str, group: str, name: str) -> None:
        self.binder = binder
        self.destination = destination
        self.key = _key(destination)
        self.group = group
        self.name = name
        self._next_claim = 0.0
        self._acks = 0

    def _claim(self, count: int) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        """Take over messages other consumers left pending for longer than the lease."""
        result = self.binder.call(
            "reclaim (XAUTOCLAIM)",
            self.binder.client.xautoclaim,
            self.key,
            self.group,
            self.name,
            min_idle_time=int(self.binder.lease * 1000),
            start_id="0-0",
            count=count,
        )
        claimed: list[tuple[bytes, dict[bytes, bytes] | None]] = result[1]
        return claimed

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        now = time.monotonic()
        entries: list[tuple[bytes, dict[bytes, bytes] | None]] = []
        redelivered = False
        if now >= self._next_claim:
            self._next_claim = now + min(self.binder.lease / 2, 5.0)
            entries = self._claim(max_messages)
            redelivered = bool(entries)
        if not entries:
            reply = self.binder.call(
                f"receive from {self.destination}",
                self.binder.client.xreadgroup,
                self.group,
                self.name,
                {self.key: ">"},
                count=max_messages,
                block=max(1, int(timeout * 1000)),
            )
            if not reply:
                return None
            entries = reply[0][1]
        ids = [entry_id for entry_id, _ in entries]
        # An entry deleted while pending comes back without fields: acknowledge it with the rest.
        messages = [decode(fields[_FIELD]) for _, fields in entries if fields]
        return Received(self.destination, messages, ids, redelivered)

    def ack(self, received: Received) -> None:
        if received.token:
            self.binder.call(
                f"ack on {self.destination}",
                self.binder.client.xack,
                self.key,
                self.group,
                *received.token,
            )
        self._acks += 1
        if self._acks % _TRIM_EVERY == 0:
            self.trim()

    def trim(self) -> None:
        """Delete the entries every group of the stream is done with."""
        client = self.binder.client
        groups = self.binder.call("trim (XINFO GROUPS)", client.xinfo_groups, self.key)
        floor: tuple[int, int] | None = None
        for info in groups:
            needed = info["last-delivered-id"]
            if info.get("pending"):
                summary = self.binder.call(
                    "trim (XPENDING)", client.xpending, self.key, info["name"]
                )
                needed = summary["min"]
            candidate = _id(needed)
            floor = candidate if floor is None else min(floor, candidate)
        if floor is not None and floor > (0, 0):
            minid = f"{floor[0]}-{floor[1]}"
            self.binder.call("trim (XTRIM)", client.xtrim, self.key, minid=minid, approximate=False)

    def close(self) -> None:
        """Nothing to release: pending messages are reclaimed by the group after the lease."""
