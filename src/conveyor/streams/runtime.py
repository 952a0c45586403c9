"""The runtime of one stream app instance: its launch spec and its loop over a binder.

One process runs one app (see :mod:`conveyor.streams.run` for its command
line). A source publishes the batches it makes; a processor receives a batch,
processes it, publishes the output, sends messages that failed
``max_attempts`` times to ``<input>.dlq`` and only then acknowledges the
batch (at-least-once); a sink writes, then acknowledges. Asked to stop, it
finishes the batch in hand and leaves the group. A broker that goes away is
reconnected with backoff; an unacknowledged batch is delivered again.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from conveyor.config import Settings
from conveyor.errors import UsageError
from conveyor.streams.apps.base import AppContext, Processor, Routed, Sink, Source
from conveyor.streams.binders import (
    Binder,
    Consumer,
    EncodingBinder,
    Received,
    dead_letter,
    open_binder,
    partition_consumer,
    partitioned_input,
    provision_partitioned,
    publish_partitioned,
)
from conveyor.streams.catalogue import AppSpec, Role, app_spec, role_of
from conveyor.streams.errors import BinderError, ExpressionError
from conveyor.streams.expressions import Expression, compile_expression
from conveyor.streams.messages import Message, encode, new_headers
from conveyor.streams.paths import StreamPaths

__all__ = ["AppState", "LaunchSpec", "StreamAppRuntime"]

log = logging.getLogger("conveyor.streams")

#: Longest pause between two reconnection attempts to a broker that went away.
MAX_BACKOFF = 10.0


class AppState(enum.Enum):
    CREATED = "created"  # options checked, binder connected; the app not yet made
    STARTING = "starting"  # making the app (loading its model, opening its files)
    RUNNING = "running"  # in the loop: consuming and/or publishing
    STOPPING = "stopping"  # asked to stop; finishing the batch in hand
    STOPPED = "stopped"  # loop left, app and binder closed


@dataclass(frozen=True)
class LaunchSpec:
    """How the platform starts one instance of one stream app (JSON keys = field names).

    ``input``/``output`` are destination names (``<stream>.<label>`` or a named
    destination); which of them is given decides the role (source, processor,
    sink). ``group`` is the consumer group on the input (the stream's name).
    """

    app: str
    options: Mapping[str, str] = field(default_factory=dict)
    binder: str = "embedded"
    input: str | None = None
    output: str | None = None
    group: str | None = None
    stream: str | None = None
    label: str | None = None
    instance_index: int = 0
    instance_count: int = 1
    #: Consume only partition ``instance_index`` of a partitioned input.
    input_partitioned: bool = False
    #: Partition the output by this expression's value over ``partition_count`` partitions.
    partition_key: str | None = None
    partition_count: int = 1
    batch_size: int = 100
    max_attempts: int = 3
    #: Groups to create on the output before publishing (default: the stream's group), so a
    #: consumer that starts later still gets everything.
    required_groups: tuple[str, ...] = ()

    @property
    def stream_name(self) -> str:
        return self.stream or self.group or "stream"

    @property
    def app_label(self) -> str:
        return self.label or self.app

    @property
    def consumer_group(self) -> str:
        return self.group or self.stream_name

    @classmethod
    def from_json(cls, data: Any) -> LaunchSpec:
        """Build from a decoded JSON object; UsageError names a wrong key or type."""
        if not isinstance(data, dict):
            raise UsageError("the stream app spec must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UsageError(
                f"unknown key(s) in the stream app spec: {', '.join(unknown)}; "
                f"known keys: {', '.join(known)}"
            )
        if "app" not in data:
            raise UsageError("the stream app spec needs 'app' (the catalogue name of the app)")
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = _typed(key, value, known[key].type)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                dict(value)
                if f.name == "options"
                else list(value)
                if f.name == "required_groups"
                else value
            )
        return out


def _typed(key: str, value: Any, annotation: Any) -> Any:
    text = str(annotation)
    ok: bool
    if key == "options":
        ok = isinstance(value, dict) and all(
            isinstance(v, str | int | float | bool) for v in value.values()
        )
        value = (
            {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
            if ok
            else value
        )
    elif key == "required_groups":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif text.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif text.startswith("bool"):
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str) or (value is None and "None" in text)
    if not ok:
        raise UsageError(f"stream app spec: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _encoder(binder: Binder) -> Callable[[Message], bytes]:
    """How ``binder`` stores a message: its own encoding, or :func:`encode`'s envelope."""
    return binder.encode if isinstance(binder, EncodingBinder) else encode


def _implementation(spec: AppSpec) -> Callable[[AppContext], Any]:
    module_name, attr = spec.implementation.split(":")
    factory: Callable[[AppContext], Any] = getattr(importlib.import_module(module_name), attr)
    return factory


class StreamAppRuntime:
    """Runs one app instance until :meth:`stop`; construct, then :meth:`run`.

    Construction checks the app and options (OptionError) and connects to the
    binder (BinderError); creating the app (e.g. loading a model) happens in
    :meth:`start`.
    """

    def __init__(
        self,
        spec: LaunchSpec,
        settings: Settings,
        *,
        binder: Binder | None = None,
        port: int | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.role = role_of(spec.input is not None, spec.output is not None)
        self.app_spec = app_spec(spec.app, self.role)
        # Paths are checked again here: the folders may differ from where the stream was created.
        self.options = self.app_spec.resolve(dict(spec.options), StreamPaths.of(settings))
        for name, value, low in (
            ("batch_size", spec.batch_size, 1),
            ("max_attempts", spec.max_attempts, 1),
            ("partition_count", spec.partition_count, 1),
            ("instance_count", spec.instance_count, 1),
            ("instance_index", spec.instance_index, 0),
        ):
            if value < low:
                raise UsageError(f"stream app spec: {name} must be at least {low}, not {value}")
        self.partition_key: Expression | None = (
            compile_expression(spec.partition_key) if spec.partition_key else None
        )
        self.stopping = threading.Event()
        self.context = AppContext(
            options=self.options,
            stream=spec.stream_name,
            label=spec.app_label,
            settings=settings,
            instance_index=spec.instance_index,
            batch_size=spec.batch_size,
            stopping=self.stopping,
            port=port,
            log=log,
            status=self.status,
        )
        self._owns_binder = binder is None
        self.binder = binder or open_binder(spec.binder, settings)
        self._encode = _encoder(self.binder)
        self.app: Any = None
        self.state = AppState.CREATED
        self.received = self.published = self.dead = 0
        #: When the counters started (wall clock): they count since this process started.
        self.started_at = time.time()

    def status(self) -> dict[str, Any]:
        """Names, state and counters, as ``/status`` answers (the http source serves it too)."""
        from conveyor.streams.status import status_of  # it imports this module

        return status_of(self)

    @property
    def input_destination(self) -> str | None:
        if self.spec.input is None:
            return None
        if self.spec.input_partitioned:
            return partitioned_input(self.binder, self.spec.input, self.spec.instance_index)
        return self.spec.input

    def start(self) -> None:
        """Create the app (load its model, open its files ...) and the output's groups."""
        self.state = AppState.STARTING
        self.app = _implementation(self.app_spec)(self.context)
        self._provision()

    def _provision(self) -> None:
        if self.spec.output is None:
            return
        for group in self.spec.required_groups or (self.spec.stream_name,):
            if self.partition_key is not None:
                provision_partitioned(
                    self.binder, self.spec.output, group, self.spec.partition_count
                )
            else:
                self.binder.provision(self.spec.output, group)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe from a signal handler)."""
        if self.state is not AppState.STOPPED:
            self.state = AppState.STOPPING
        self.stopping.set()

    def run(self) -> None:
        """Start (if not yet) and loop until stopped; closes everything on the way out."""
        try:
            if self.app is None:
                self.start()
            if not self.stopping.is_set():
                self.state = AppState.RUNNING
            log.info(
                "%s %s (%s) started: input=%s output=%s group=%s binder=%s",
                self.role, self.spec.app_label, self.spec.app, self.input_destination,
                self.spec.output, self.spec.consumer_group, self.binder.kind,
            )  # fmt: skip
            if self.role is Role.SOURCE:
                self._run_source()
            else:
                self._run_consumer()
        finally:
            if self.app is not None:
                self.app.close()
            if self._owns_binder:
                with contextlib.suppress(BinderError):
                    self.binder.close()
            self.state = AppState.STOPPED
            log.info(
                "%s stopped: received=%d published=%d dead-lettered=%d",
                self.spec.app_label, self.received, self.published, self.dead,
            )  # fmt: skip

    # -- sources ------------------------------------------------------------------------------

    def _run_source(self) -> None:
        source: Source = self.app
        for batch in source.batches():
            self.received += len(batch)  # what the source accepted (an http POST's records)
            for m in batch:
                m.headers = {**new_headers(self.spec.stream_name, self.spec.app_label), **m.headers}
                self._seal(m)
            self._retrying(self._publish, list(batch))
            if self.stopping.is_set():
                break

    # -- processors and sinks -----------------------------------------------------------------

    def _run_consumer(self) -> None:
        assert self.input_destination is not None
        consumer: Consumer | None = None
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                received = consumer.receive(self.spec.batch_size, timeout=0.2)
                if received is not None:
                    self._handle(received)
                    consumer.ack(received)
                backoff = 0.5
            except BinderError as exc:
                log.error("%s; reconnecting in %.1fs", exc, backoff)
                self._drop(consumer)
                consumer = None
                if self.stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._reconnect()
        if consumer is not None:
            with contextlib.suppress(BinderError):
                consumer.close()

    def _consumer(self) -> Consumer:
        spec, name = self.spec, self._consumer_name()
        assert spec.input is not None
        if spec.input_partitioned:
            return partition_consumer(
                self.binder, spec.input, spec.consumer_group, spec.instance_index,
                spec.instance_count, name=name,
            )  # fmt: skip
        return self.binder.consumer(spec.input, spec.consumer_group, name=name)

    def _consumer_name(self) -> str:
        return f"{self.spec.stream_name}-{self.spec.app_label}-{self.spec.instance_index}"

    def _drop(self, consumer: Consumer | None) -> None:
        if consumer is not None:
            with contextlib.suppress(BinderError, OSError):
                consumer.close()

    def _reconnect(self) -> None:
        if not self._owns_binder:
            return
        with contextlib.suppress(BinderError, OSError):
            self.binder.close()
        try:
            self.binder = open_binder(self.spec.binder, self.settings)
            self._encode = _encoder(self.binder)
            self._provision()
        except BinderError as exc:
            log.error("still cannot reach the binder: %s", exc)

    def _retrying(
        self, publish: Callable[[list[Message | Routed]], None], batch: list[Message | Routed]
    ) -> None:
        """Publish until it succeeds, reconnecting with backoff, or stop."""
        backoff = 0.5
        while True:
            try:
                publish(batch)
                return
            except BinderError as exc:
                log.error("%s; retrying in %.1fs", exc, backoff)
                if self.stopping.wait(backoff):
                    raise
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._reconnect()

    def _call(self, messages: list[Message]) -> list[Message | Routed]:
        if self.role is Role.SINK:
            sink: Sink = self.app
            sink.write(messages)
            return []
        processor: Processor = self.app
        outputs = processor.process(messages)
        # Encoding here makes a payload that is not JSON a failure of this message (retried,
        # then dead-lettered) instead of a publish that can never succeed.
        for item in outputs:
            self._seal(item.message if isinstance(item, Routed) else item)
        return outputs

    def _seal(self, message: Message) -> None:
        """Final headers (id, stream, app) and the encoded bytes the binder will store."""
        headers = message.headers
        if "id" not in headers:
            headers.update(new_headers(self.spec.stream_name, self.spec.app_label))
        headers["stream"] = self.spec.stream_name
        headers["app"] = self.spec.app_label
        message.wire = None
        message.wire = self._encode(message)

    def _apply(
        self, messages: list[Message]
    ) -> tuple[list[Message | Routed], list[tuple[Message, str]]]:
        """Process a batch; after a failure, each message alone, up to max_attempts times."""
        try:
            return self._call(messages), []
        except Exception as exc:
            # App code: any failure is retried message by message, so one bad message
            # does not hold up the others.
            log.debug("batch failed (%s); retrying message by message", exc)
        outputs: list[Message | Routed] = []
        failed: list[tuple[Message, str]] = []
        for message in messages:
            error = ""
            for _ in range(self.spec.max_attempts):
                try:
                    outputs += self._call([message])
                    break
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
            else:
                failed.append((message, error))
        return outputs, failed

    def _handle(self, received: Received) -> None:
        self.received += len(received.messages)
        if not received.messages:
            return
        outputs, failed = self._apply(received.messages)
        self._publish(outputs)
        assert self.input_destination is not None
        for message, error in failed:
            log.warning(
                "%s: message %s dead-lettered: %s",
                self.spec.app_label,
                message.headers.get("id"),
                error,
            )
            dead_letter(
                self.binder, self.input_destination, self.spec.consumer_group, message,
                error=error, app=self.spec.app_label, attempts=self.spec.max_attempts,
            )  # fmt: skip
            self.dead += 1

    def _key(self, message: Message) -> Any:
        assert self.partition_key is not None
        try:
            return self.partition_key.evaluate(message.payload, message.headers)
        except ExpressionError as exc:
            # Still delivered (to the partition of the null key) rather than lost.
            log.warning("partition key of message %s: %s", message.headers.get("id"), exc)
            return None

    def _publish(self, outputs: list[Message | Routed]) -> None:
        default: list[Message] = []
        routed: dict[str, list[Message]] = {}
        for item in outputs:
            if isinstance(item, Routed):
                routed.setdefault(item.destination, []).append(item.message)
            else:
                default.append(item)
        if default and self.spec.output is not None:
            if self.partition_key is not None:
                publish_partitioned(
                    self.binder, self.spec.output, default, self._key, self.spec.partition_count
                )
            else:
                self.binder.publish(self.spec.output, default)
        for destination, batch in routed.items():
            self.binder.publish(destination, batch)
        self.published += len(default) + sum(len(b) for b in routed.values())
