"""Helpers for the runtime tests: an app on a thread, and collecting what a destination holds."""

from __future__ import annotations

import threading
from typing import Any

from conveyor.config import Settings
from conveyor.streams.binders import Binder
from conveyor.streams.messages import Message
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.waiting import poll

PATIENCE = 30.0


class Running:
    """A runtime on a thread, stopped and joined at the end of the test."""

    def __init__(self, runtime: StreamAppRuntime) -> None:
        self.runtime = runtime
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runtime.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.runtime.stop()
        self.thread.join(PATIENCE)
        assert not self.thread.is_alive()
        assert self.error is None


def run_app(binder: Binder, settings: Settings, **spec: Any) -> Running:
    runtime = StreamAppRuntime(LaunchSpec(**spec), settings, binder=binder)
    runtime.start()  # the app exists (a listening source has its port) before the loop starts
    return Running(runtime)


def collect(binder: Binder, destination: str, group: str, count: int) -> list[Message]:
    consumer = binder.consumer(destination, group, name="test")
    got: list[Message] = []

    def enough() -> bool:
        batch = consumer.receive(100, timeout=0.2)
        if batch:
            got.extend(batch.messages)
            consumer.ack(batch)
        return len(got) >= count

    poll(enough, timeout=PATIENCE, interval=0)  # receive() waits; the caller asserts what came
    consumer.close()
    return got
