"""What a built-in (or user) stream app implements, and what it is given.

- a **source** yields batches of messages until ``context.stopping`` is set;
- a **processor** turns a batch into output messages (a :class:`Routed` one
  goes to a named destination instead of the app's output);
- a **sink** writes a batch.

A processor or sink may raise on a batch: the runtime then retries message by
message (3 attempts by default) and sends the ones that still fail to the
dead-letter destination, so one bad message never holds up the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.config import Settings
from conveyor.streams.messages import Message

__all__ = ["AppContext", "Processor", "Routed", "Sink", "Source"]


@dataclass
class AppContext:
    """Everything an app instance may use: its options (typed), names, settings, stop flag."""

    options: dict[str, Any]
    stream: str
    label: str
    settings: Settings
    instance_index: int = 0
    batch_size: int = 100
    #: Set when the process is asked to stop; sources return at the next batch boundary.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: A port given by the platform ($PORT), for apps that listen (the http source).
    port: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("conveyor.streams"))
    #: The instance's status (names, counters) for apps that serve it themselves (http).
    status: Callable[[], Mapping[str, Any]] | None = None


@dataclass
class Routed:
    """A processor's output bound for a named destination rather than the app's output."""

    destination: str
    message: Message


class Source(Protocol):
    def batches(self) -> Iterator[list[Message]]:
        """Yield batches of new messages; return once ``stopping`` is set (or at the end)."""
        ...

    def close(self) -> None: ...


class Processor(Protocol):
    def process(self, messages: list[Message]) -> list[Message | Routed]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    def write(self, messages: list[Message]) -> None: ...

    def close(self) -> None: ...
