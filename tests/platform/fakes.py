"""Scripted stand-ins for processes and probes, and an event recorder to await on.

They drive the real supervisor through histories on a FakeClock, so backoff
and health logic are exercised without any real time passing.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping, Sequence

from conveyor.platform.health import HealthCheck
from conveyor.platform.isolation import Sandbox
from conveyor.platform.processes import OutputSink, ProcessHandle, SpawnRequest
from conveyor.platform.supervisor import Event

#: Real seconds a test waits for something before failing (a guard, not a timing).
DEADLINE = 10.0


class FakeProcess:
    """A process that exits when the test says so (or on a signal it does not ignore)."""

    def __init__(self, pid: int, argv: Sequence[str], env: Mapping[str, str], output: OutputSink):
        self.pid = pid
        self.argv = list(argv)
        self.env = dict(env)
        self.output = output
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.ignore_sigterm = False
        self.rss: int | None = 50 * 1024 * 1024
        #: What the spawner would say killed it (a memory cgroup's breach ...).
        self.reason: str | None = None
        self.sandbox: Sandbox | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def say(self, text: str, stream: str = "stdout") -> None:
        self.output(stream, text)  # type: ignore[arg-type]

    def exit(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            self._exited.set_result(status)

    async def wait(self) -> int:
        return await self._exited

    def signal_group(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not self.ignore_sigterm):
            self.exit(-sig)

    def memory_bytes(self) -> int | None:
        return self.rss

    def crash_reason(self, status: int | None = None) -> str | None:
        return self.reason

    def describe_isolation(self) -> str:
        return "fake"


class FakeSpawner:
    """Hands out FakeProcesses and remembers them, newest last."""

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.on_spawn: Callable[[FakeProcess], None] | None = None

    async def spawn(self, request: SpawnRequest) -> ProcessHandle:
        process = FakeProcess(1000 + len(self.processes), request.argv, request.env, request.output)
        process.sandbox = request.sandbox
        self.processes.append(process)
        if self.on_spawn is not None:
            self.on_spawn(process)
        return process

    @property
    def latest(self) -> FakeProcess:
        return self.processes[-1]


class FakeProbe:
    """Answers health checks from a table the test edits: (check type, port) -> healthy."""

    def __init__(self, default: bool = True) -> None:
        self.default = default
        self.answers: dict[str, bool] = {}
        self.calls = 0

    async def __call__(self, check: HealthCheck, host: str, port: int) -> bool:
        self.calls += 1
        return self.answers.get(
            check.endpoint if check.type == "http" else check.type, self.default
        )


class Events:
    """Collects supervisor events; lets a test await the next one of a kind."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()
        self._cursor = 0

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]

    async def next(
        self, kind: str, index: int | None = None, *, deadline: float = DEADLINE
    ) -> Event:
        """The first event of ``kind`` after the previous one returned (waits if needed)."""

        def find() -> Event | None:
            for position in range(self._cursor, len(self.seen)):
                event = self.seen[position]
                if event.kind == kind and (index is None or event.index == index):
                    self._cursor = position + 1
                    return event
            return None

        async def wait() -> Event:
            async with self._changed:
                while (found := find()) is None:
                    await self._changed.wait()
                return found

        return await asyncio.wait_for(wait(), deadline)
