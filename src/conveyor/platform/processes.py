"""Spawning instance processes: each in its own process group, output read line by line.

:class:`Spawner` is the seam the supervisor's tests replace with scripted fake
processes; :class:`SubprocessSpawner` is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from conveyor.platform.errors import SpawnError
from conveyor.platform.logs import Stream

if TYPE_CHECKING:
    from conveyor.platform.isolation import Sandbox

__all__ = [
    "OutputSink",
    "ProcessHandle",
    "SpawnRequest",
    "Spawner",
    "SubprocessSpawner",
    "group_rss",
    "start_ticks",
    "stop_groups",
]

#: Called once per line of output, without the newline.
OutputSink = Callable[[Stream, str], None]

#: Longest line kept whole; longer ones are split into pieces of this size
#: (never dropped), so one runaway line cannot exhaust memory.
LINE_LIMIT = 64 * 1024


class ProcessHandle(Protocol):
    """A running instance process, as the supervisor sees it."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status (negative: killed by that signal) after."""
        ...

    async def wait(self) -> int:
        """Wait for exit and for the last line of output to be delivered; the exit status."""
        ...

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process in the instance's process group."""
        ...

    def memory_bytes(self) -> int | None:
        """Resident memory of the whole process group, or None if unknown."""
        ...

    def crash_reason(self, status: int | None = None) -> str | None:
        """Why it died when that says more than its exit status (its memory limit ...)."""
        ...

    def describe_isolation(self) -> str:
        """Which isolation it got, in one line (``conveyor app`` shows it)."""
        ...


@dataclass(frozen=True)
class SpawnRequest:
    """A process to start: its command, environment and folder, where its output goes.

    ``sandbox`` says what an isolated process may see (a plain spawner ignores it).
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path | None
    output: OutputSink
    sandbox: Sandbox | None = None


class Spawner(Protocol):
    """Starts instance processes."""

    async def spawn(self, request: SpawnRequest) -> ProcessHandle: ...


def group_rss(
    pgid: int, proc: Path = Path("/proc"), *, exclude_parent: int | None = None
) -> int | None:
    """Sum the resident set size of every process in group ``pgid`` (Linux /proc).

    ``exclude_parent`` leaves out that process and its direct children (an
    isolation wrapper and the init it forked, which are not the app's memory).
    """
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    found = False
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is field 3 (state): pgrp is field 5, rss (pages) field 24.
        if len(fields) > 21 and int(fields[2]) == pgid:
            if exclude_parent is not None and exclude_parent in (int(entry.name), int(fields[1])):
                continue
            found = True
            total += int(fields[21]) * page
    return total if found else None


class _Subprocess:
    def __init__(self, process: asyncio.subprocess.Process, pumps: list[asyncio.Task[None]]):
        self._process = process
        self._pumps = pumps

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        status = await self._process.wait()
        # The instance is its group: once the leader is gone, what it left behind
        # (workers, grandchildren) goes too, or it would keep the port and the pipes.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps), timeout=5.0)
        return status

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    def memory_bytes(self) -> int | None:
        return group_rss(self._process.pid)

    def crash_reason(self, status: int | None = None) -> str | None:
        """Why it died beyond its exit status; a plain process has nothing to add."""
        return None

    def describe_isolation(self) -> str:
        """Which isolation it got (see :mod:`.isolation`): none, started plainly."""
        return "none"


async def _pump(reader: asyncio.StreamReader, stream: Stream, output: OutputSink) -> None:
    while True:
        try:
            raw = await reader.readuntil(b"\n")
            raw = raw[:-1]
        except asyncio.IncompleteReadError as end:
            if end.partial:
                output(stream, end.partial.decode("utf-8", "replace"))
            return
        except asyncio.LimitOverrunError:
            raw = await reader.read(LINE_LIMIT)
        output(stream, raw.removesuffix(b"\r").decode("utf-8", "replace"))


class SubprocessSpawner:
    """Runs instances as real child processes, each leading a new session (and group).

    Nothing is isolated: a ``sandbox`` is ignored (its memory limit is only polled
    by the supervisor). :class:`~.isolation.IsolatedSpawner` is what a platform runs.
    """

    async def spawn(self, request: SpawnRequest) -> ProcessHandle:
        argv, output = request.argv, request.output
        if not argv:
            raise SpawnError("an instance needs a command to run; the command is empty")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(request.env),
                cwd=request.cwd,
                start_new_session=True,
                limit=LINE_LIMIT,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise SpawnError(
                f"cannot start {argv[0]!r}: {exc.strerror or exc}",
                hint="Check the app's command and that its executable is installed.",
            ) from exc
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [
            asyncio.create_task(_pump(process.stdout, "stdout", output)),
            asyncio.create_task(_pump(process.stderr, "stderr", output)),
        ]
        return _Subprocess(process, pumps)


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The process's start time in clock ticks since boot (None if it is gone).

    With the pid, it names one process: a recycled pid has another start time.
    """
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def stop_groups(groups: list[tuple[int, int]], grace: float = 5.0) -> int:
    """Stop the process groups led by ``(pid, start ticks)`` that still run; how many did.

    SIGTERM first, SIGKILL after ``grace`` seconds; a pid now owned by another
    process (its start time differs) is left alone.
    """
    alive = []
    for pid, ticks in groups:
        if start_ticks(pid) == ticks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
                alive.append(pid)
    deadline = time.monotonic() + grace
    for pid in alive:
        while start_ticks(pid) is not None and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return len(alive)
