"""The NATS JetStream binder (nats-py): a stream per destination, a durable pull consumer per group.

A destination ``d`` is the JetStream stream ``conveyor-<d>`` on the subject
``conveyor.d``; group ``g`` is the durable pull consumer ``g`` on it, with
explicit acknowledgements. The stream keeps a message until every group has
acknowledged it (interest retention), so a destination holds no more than its
slowest group still needs. A message a consumer holds longer than ``lease``
seconds (its ``ack_wait``) without acknowledging it is delivered again;
closing a consumer hands back what it held at once (a NAK).

nats-py is asynchronous and the binder protocol is not: each binder runs the
client on an event loop of its own, on a daemon thread, and every call waits
for its coroutine with a bound, so a broker that stops answering is a
BinderError, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message, decode, encode

__all__ = ["NatsBinder"]

T = TypeVar("T")

#: Bound on one call to the server (a batch published, a stream created ...).
_CALL_TIMEOUT = 30.0
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def _name(text: str) -> str:
    """A stream or consumer name for ``text``: one-to-one, and free of ``.``, ``*``, ``>``."""
    return _UNSAFE.sub(lambda m: "_" + m.group().encode().hex(), text)


def _stream(destination: str) -> str:
    return f"conveyor-{_name(destination)}"


def _subject(destination: str) -> str:
    return f"conveyor.{destination}"


class NatsBinder:
    """Destinations as JetStream streams on the NATS server(s) at ``url``."""

    kind = "nats"

    def __init__(self, url: str, *, lease: float = 30.0) -> None:
        import nats
        import nats.errors
        import nats.js.errors

        self.url = url
        self.lease = lease
        self._nats = nats
        self._missing: tuple[type[Exception], ...] = (nats.js.errors.NotFoundError,)
        self._errors: tuple[type[Exception], ...] = (nats.errors.Error, OSError)
        self._provisioned: set[tuple[str, str | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._open()

    def _open(self) -> None:
        """Start the client's loop and connect; BinderError naming the URL when it fails."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="conveyor-nats", daemon=True
            )
            self._thread.start()
        try:
            self._nc = self._run(f"connect to {self.url}", self._connect(self.url), 15.0)
        except BinderError as exc:
            self._stop_loop()
            cause = exc.__cause__
            reason = "no answer in 15s" if isinstance(cause, TimeoutError) else repr(cause)
            raise BinderError(
                f"nats binder: cannot reach {self.url}: {reason}; "
                "is the server up, with JetStream on?"
            ) from exc
        self.js = self._nc.jetstream(timeout=_CALL_TIMEOUT)

    async def _connect(self, url: str) -> Any:
        from nats.aio.client import Client

        client = Client()
        try:
            # No reconnecting inside the client: a dropped connection fails the next call,
            # and the stream runtime reopens the binder with its own backoff (as with Redis).
            await client.connect(
                servers=url.split("?", 1)[0].split(","),
                connect_timeout=3,
                allow_reconnect=False,
                error_cb=self._ignore,
                disconnected_cb=self._quiet,
                reconnected_cb=self._quiet,
                closed_cb=self._quiet,
            )
        except BaseException:
            # nats-py leaves the socket of a failed attempt open.
            transport = getattr(client, "_transport", None)
            if transport is not None:
                transport.close()
            raise
        return client

    @staticmethod
    async def _ignore(exc: Exception) -> None:
        """Connection errors surface through the calls that meet them; no second report."""

    @staticmethod
    async def _quiet() -> None:
        """The default callbacks print; the calls report what matters."""

    def call(self, what: str, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run ``coro`` on the client's loop and wait for it, translating errors to BinderError.

        A binder whose connection was closed (or dropped) connects again first, as the
        other binders' clients do, so the stream runtime can keep using it.
        """
        if self._nc is None or self._nc.is_closed:
            try:
                self._open()
            except BinderError:
                coro.close()
                raise
        return self._run(what, coro, timeout)

    def _run(self, what: str, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise BinderError(f"nats binder: no answer for {what} in {timeout:.0f}s") from exc
        except self._errors as exc:
            raise BinderError(f"nats binder: {what} failed: {exc!r}") from exc

    async def _ensure(self, destination: str, group: str | None) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType

        stream = _stream(destination)
        if (destination, None) not in self._provisioned:
            try:
                await self.js.stream_info(stream)
            except self._missing:
                with contextlib.suppress(self._nats.js.errors.BadRequestError):
                    # Raced by another binder creating it: that is as good.
                    await self.js.add_stream(
                        name=stream,
                        subjects=[_subject(destination)],
                        retention=RetentionPolicy.INTEREST,
                        storage=StorageType.FILE,
                    )
            self._provisioned.add((destination, None))
        if group is not None and (destination, group) not in self._provisioned:
            config = ConsumerConfig(
                durable_name=_name(group),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.lease,
                max_deliver=-1,
                max_ack_pending=20_000,
            )
            await self.js.add_consumer(stream, config)
            self._provisioned.add((destination, group))

    def provision(self, destination: str, group: str) -> None:
        self.call(f"provision {destination}", self._ensure(destination, group))

    async def _publish(self, destination: str, messages: Sequence[Message]) -> None:
        await self._ensure(destination, None)
        subject, stream = _subject(destination), _stream(destination)
        futures = [
            await self.js.publish_async(subject, encode(message), stream=stream)
            for message in messages
        ]
        # Returns once JetStream has stored (and acknowledged) every message.
        await asyncio.gather(*futures)

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if messages:
            self.call(f"publish to {destination}", self._publish(destination, messages))

    def consumer(self, destination: str, group: str, *, name: str) -> NatsConsumer:
        self.provision(destination, group)
        subscription = self.call(
            f"consume {destination}",
            self.js.pull_subscribe_bind(_name(group), _stream(destination)),
        )
        return NatsConsumer(self, destination, subscription, name)

    async def _delete(self, destination: str) -> None:
        with contextlib.suppress(*self._missing):
            await self.js.delete_stream(_stream(destination))

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        self.call(f"delete {destination}", self._delete(destination))
        self._provisioned = {p for p in self._provisioned if p[0] != destination}

    async def _lag(self, destination: str, group: str) -> int | None:
        try:
            info = await self.js.consumer_info(_stream(destination), _name(group))
        except self._missing:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    def lag(self, destination: str, group: str) -> int | None:
        return self.call(f"lag of {destination}", self._lag(destination, group))

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(BinderError):
                self._run("close", self._nc.close(), 10.0)
        self._nc = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        # Whatever a timed-out call left running ends here, not as "Task was destroyed".
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10.0)
        if not thread.is_alive():
            loop.close()


async def _cancel_pending() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class NatsConsumer:
    """A pull subscription on a group's durable consumer."""

    def __init__(self, binder: NatsBinder, destination: str, subscription: Any, name: str) -> None:
        self.binder = binder
        self.destination = destination
        self.name = name
        self._subscription = subscription
        #: Received and not yet acknowledged: handed back on close.
        self._held: dict[int, list[Any]] = {}

    async def _fetch(self, max_messages: int, timeout: float) -> list[Any]:
        try:
            fetched: list[Any] = await self._subscription.fetch(max_messages, timeout=timeout)
        except TimeoutError:  # nothing arrived in time
            return []
        return fetched

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        what = f"receive from {self.destination}"
        fetched = self.binder.call(what, self._fetch(max_messages, max(timeout, 0.01)))
        if not fetched:
            return None
        self._held[id(fetched)] = fetched
        redelivered = any(m.metadata.num_delivered > 1 for m in fetched)
        return Received(self.destination, [decode(m.data) for m in fetched], fetched, redelivered)

    async def _settle(self, fetched: list[Any], *, ack: bool) -> None:
        for message in fetched:
            await (message.ack() if ack else message.nak())
        # Acks are plain publishes: the flush makes sure the server has them before we go on.
        await self.binder._nc.flush()

    def ack(self, received: Received) -> None:
        self._held.pop(id(received.token), None)
        self.binder.call(f"ack on {self.destination}", self._settle(received.token, ack=True))

    def close(self) -> None:
        held, self._held = list(self._held.values()), {}
        with contextlib.suppress(BinderError):
            for fetched in held:
                self.binder.call("hand back", self._settle(fetched, ack=False), timeout=10.0)
            self.binder.call("unsubscribe", self._subscription.unsubscribe(), timeout=10.0)
