"""The RabbitMQ binder (pika): a durable fanout exchange per destination, a queue per group.

A destination ``d`` is the durable fanout exchange ``conveyor.d``; group ``g``
is the durable queue ``conveyor.d.g`` bound to it, declared by the publisher
too (so nothing published before the consumer starts is lost). Messages are
persistent and published with publisher confirms; consumers acknowledge
manually (``multiple=True`` up to the batch's last delivery tag), and what a
consumer held when its connection died goes back to the queue.

Confirms are awaited per batch, not per message: pika's blocking channel
waits for each confirm in turn (one broker disk flush per message), so the
batch is published on the channel underneath it and the confirms collected
together — the same guarantee, one wait per batch (see bench/streams).

Publishing and consuming use separate connections, as RabbitMQ advises.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message, decode, encode

__all__ = ["RabbitBinder"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep pika from logging (with tracebacks) what the binder handles or expects itself.

    Closing a connection the broker already dropped (a sink's idle publishing
    connection misses its heartbeats) makes pika log errors and stack traces,
    though nothing is wrong: the binder closes it either way.
    """
    pika_log = logging.getLogger("pika")
    level = pika_log.level
    pika_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        pika_log.setLevel(level)


def _close(connection: Any, errors: tuple[type[Exception], ...]) -> None:
    """Close ``connection`` quietly: a normal shutdown, whatever state the connection is in."""
    with _quiet(), contextlib.suppress(*errors):
        if connection.is_open:
            connection.close()


def _exchange(destination: str) -> str:
    return f"conveyor.{destination}"


def _queue(destination: str, group: str) -> str:
    return f"conveyor.{destination}.{group}"


class RabbitBinder:
    """Destinations on the RabbitMQ server at ``url`` (``amqp://user:pass@host:port/vhost``)."""

    kind = "rabbitmq"

    def __init__(self, url: str, *, prefetch: int = 1000) -> None:
        import pika
        import pika.exceptions

        self.url = url
        self.prefetch = prefetch
        self._pika = pika
        self._errors: tuple[type[Exception], ...] = (pika.exceptions.AMQPError, OSError)
        self._declared: set[tuple[str, str | None]] = set()
        self._publisher = self.connect()
        self._channel = self._publisher.channel()
        self._sent = 0  # delivery tags of this channel: 1, 2, ... in publish order
        self._unconfirmed: set[int] = set()
        self._refused = 0
        selected: list[bool] = []
        # The asynchronous channel under the blocking one: publish without waiting, then
        # collect the broker's acks (multiple=True acks every tag up to its own).
        self._impl = self._channel._impl
        self._impl.confirm_delivery(self._on_confirm, callback=lambda _frame: selected.append(True))
        self._wait(lambda: bool(selected), "confirm mode")

    def connect(self) -> Any:
        try:
            params = self._pika.URLParameters(self.url)
            return self._pika.BlockingConnection(params)
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: cannot reach {self.url}: {exc!r}") from exc

    def declare(self, channel: Any, destination: str, group: str | None) -> None:
        try:
            channel.exchange_declare(_exchange(destination), exchange_type="fanout", durable=True)
            if group is not None:
                queue = _queue(destination, group)
                channel.queue_declare(queue, durable=True)
                channel.queue_bind(queue, _exchange(destination))
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: cannot declare {destination}: {exc!r}") from exc

    def provision(self, destination: str, group: str) -> None:
        if (destination, group) not in self._declared:
            self.declare(self._channel, destination, group)
            self._declared.add((destination, group))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        if method.NAME.endswith("Nack"):
            self._refused += (
                len([t for t in self._unconfirmed if t <= tag]) if method.multiple else 1
            )
        if method.multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)

    def _wait(self, done: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not done():
                if time.monotonic() > deadline:
                    raise BinderError(f"rabbitmq binder: no answer for {what} in {timeout:.0f}s")
                self._publisher.process_data_events(time_limit=0.05)
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: {what} failed: {exc!r}") from exc

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if (destination, None) not in self._declared:
            self.declare(self._channel, destination, None)
            self._declared.add((destination, None))
        props = self._pika.BasicProperties(delivery_mode=2, content_type="application/json")
        exchange = _exchange(destination)
        try:
            for message in messages:
                self._impl.basic_publish(exchange, "", encode(message), props)
                self._sent += 1
                self._unconfirmed.add(self._sent)
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: publish to {destination} failed: {exc!r}") from exc
        # Returns once the broker has confirmed every message (persisted to its queues).
        self._wait(lambda: not self._unconfirmed, f"publish to {destination}")
        if self._refused:
            refused, self._refused = self._refused, 0
            raise BinderError(f"rabbitmq binder: the broker refused {refused} message(s)")

    def consumer(self, destination: str, group: str, *, name: str) -> RabbitConsumer:
        return RabbitConsumer(self, destination, group, name)

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        try:
            for group in groups:
                self._channel.queue_delete(_queue(destination, group))
            self._channel.exchange_delete(_exchange(destination))
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: cannot delete {destination}: {exc!r}") from exc
        self._declared = {d for d in self._declared if d[0] != destination}

    def lag(self, destination: str, group: str) -> int | None:
        # A passive declare of a missing queue closes its channel: use a throwaway one.
        try:
            channel = self._publisher.channel()
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: lag of {destination} failed: {exc!r}") from exc
        try:
            ok = channel.queue_declare(_queue(destination, group), passive=True)
        except self._pika.exceptions.ChannelClosedByBroker:
            return None
        except self._errors as exc:
            raise BinderError(f"rabbitmq binder: lag of {destination} failed: {exc!r}") from exc
        with contextlib.suppress(*self._errors):
            channel.close()
        return int(ok.method.message_count)

    def keep_alive(self) -> None:
        """Answer the broker's heartbeats on the publishing connection while only consuming."""
        try:
            with _quiet():
                self._publisher.process_data_events(time_limit=0)
        except self._errors as exc:
            raise BinderError(
                f"rabbitmq binder: the publishing connection failed: {exc!r}"
            ) from exc

    def close(self) -> None:
        # Already gone or not: nothing is pending on the publisher side.
        _close(self._publisher, self._errors)


class RabbitConsumer:
    def __init__(self, binder: RabbitBinder, destination: str, group: str, name: str) -> None:
        self.binder = binder
        self.destination = destination
        self._buffer: list[tuple[int, bool, bytes]] = []
        self._connection = binder.connect()
        try:
            self._channel = self._connection.channel()
            binder.declare(self._channel, destination, group)
            self._channel.basic_qos(prefetch_count=binder.prefetch)
            self._channel.basic_consume(
                _queue(destination, group), self._on_message, auto_ack=False, consumer_tag=None
            )
        except binder._errors as exc:
            raise BinderError(f"rabbitmq binder: cannot consume {destination}: {exc!r}") from exc
        self.name = name

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._buffer.append((method.delivery_tag, bool(method.redelivered), body))

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        # Sinks never publish: without this the broker would drop the publishing connection.
        self.binder.keep_alive()
        deadline = time.monotonic() + timeout
        try:
            self._connection.process_data_events(time_limit=0)
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._connection.process_data_events(time_limit=min(remaining, 0.2))
        except self.binder._errors as exc:
            raise BinderError(
                f"rabbitmq binder: receive from {self.destination} failed: {exc!r}"
            ) from exc
        taken, self._buffer = self._buffer[:max_messages], self._buffer[max_messages:]
        return Received(
            self.destination,
            [decode(body) for _, _, body in taken],
            taken[-1][0],
            any(r for _, r, _ in taken),
        )

    def ack(self, received: Received) -> None:
        try:
            self._channel.basic_ack(delivery_tag=received.token, multiple=True)
        except self.binder._errors as exc:
            raise BinderError(
                f"rabbitmq binder: ack on {self.destination} failed: {exc!r}"
            ) from exc

    def close(self) -> None:
        # The broker requeues whatever was not acknowledged.
        _close(self._connection, self.binder._errors)
