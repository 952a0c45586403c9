"""A bounded, sequence-numbered buffer of instance output lines.

Every line gets a sequence number. ``recent`` gives what is still kept;
``follow`` yields every line after a cursor and never skips one silently: a
follower that falls so far behind that lines were rotated out receives a
single :class:`LogLine` with stream ``"gap"`` saying how many it missed.

>>> buf = LogBuffer(capacity=2)
>>> for text in ["a", "b", "c"]:
...     _ = buf.append(0, "stdout", text, at=0.0)
>>> [line.text for line in buf.recent()]
['b', 'c']
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["LogBuffer", "LogFiles", "LogLine", "Stream"]

Stream = Literal["stdout", "stderr", "platform", "gap"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line an instance wrote (without its newline), tagged with where it came from."""

    seq: int
    index: int
    stream: Stream
    text: str
    at: float

    def format(self) -> str:
        """``[3/stderr] message`` — how ``conveyor logs`` prints it."""
        return f"[{self.index}/{self.stream}] {self.text}"


class LogBuffer:
    """Keeps the last ``capacity`` lines of an app's instances; older lines rotate out."""

    def __init__(
        self, capacity: int = 10_000, *, on_line: Callable[[LogLine], None] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("a log buffer needs room for at least one line")
        self._on_line = on_line
        self._closed = False
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._next_seq = 0
        self._changed = asyncio.Event()

    def append(self, index: int, stream: Stream, text: str, *, at: float) -> LogLine:
        line = LogLine(self._next_seq, index, stream, text, at)
        self._next_seq += 1
        self._lines.append(line)
        if self._on_line is not None:
            self._on_line(line)
        # Wake followers; a fresh Event for the next wait keeps this O(1).
        self._changed.set()
        self._changed = asyncio.Event()
        return line

    def restore(self, lines: list[tuple[int, Stream, str, float]]) -> None:
        """Put back lines kept from before (on disk) without writing them out again."""
        for index, stream, text, at in lines:
            self._lines.append(LogLine(self._next_seq, index, stream, text, at))
            self._next_seq += 1

    def close(self) -> None:
        """No more lines will come (the app was deleted, the platform stops): followers end."""
        self._closed = True
        self._changed.set()

    @property
    def next_seq(self) -> int:
        """The sequence number the next line will get (a cursor for :meth:`follow`)."""
        return self._next_seq

    def recent(self, limit: int | None = None, *, index: int | None = None) -> list[LogLine]:
        """The kept lines, oldest first; only instance ``index``'s if given."""
        lines = [ln for ln in self._lines if index is None or ln.index == index]
        return lines if limit is None else lines[-limit:] if limit > 0 else []

    def since(self, cursor: int) -> list[LogLine]:
        """Lines numbered ``cursor`` and later, with a gap marker if some rotated out."""
        if not self._lines or cursor >= self._next_seq:
            return []
        first = self._lines[0].seq
        out: list[LogLine] = []
        if cursor < first:
            missed = first - cursor
            out.append(LogLine(cursor, -1, "gap", f"{missed} lines rotated out before read", 0.0))
            cursor = first
        out.extend(list(self._lines)[cursor - first :])
        return out

    async def follow(self, cursor: int | None = None) -> AsyncGenerator[LogLine, None]:
        """Yield every line from ``cursor`` (default: from now on), waiting for new ones."""
        position = self._next_seq if cursor is None else cursor
        while True:
            changed = self._changed
            batch = self.since(position)
            for line in batch:
                yield line
            if batch:
                position = batch[-1].seq + 1
                continue
            if self._closed:
                return
            await changed.wait()


class LogFiles:
    """Every app's lines on disk too, in ``<folder>/<app>.log``, rotated by size.

    When a file passes ``max_bytes`` it becomes ``<app>.log.1`` (the older ones
    shift up, the oldest beyond ``keep`` is deleted), so an app's logs take at
    most ``(keep + 1) * max_bytes`` however much it writes.
    """

    def __init__(self, folder: Path, *, max_bytes: int = 10 * 1024 * 1024, keep: int = 3):
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep = keep
        self._open: dict[str, _AppLog] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, app: str) -> Path:
        return self.folder / f"{app}.log"

    def writer(self, app: str) -> Callable[[LogLine], None]:
        """A function that appends one line to ``app``'s file (kept open until closed)."""
        current = self._open.get(app)
        if current is None:
            current = self._open[app] = _AppLog(self, self.path(app))
        return current

    def close(self, app: str | None = None) -> None:
        """Close ``app``'s file (every file if None); a later line opens it again."""
        for name in [app] if app is not None else list(self._open):
            log_file = self._open.pop(name, None)
            if log_file is not None:
                log_file.close()

    def tail(self, app: str, limit: int) -> list[tuple[int, Stream, str, float]]:
        """The last ``limit`` lines of ``app``'s file, parsed back (for a restarted platform)."""
        import calendar
        import re

        path = self.path(app)
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 256 * limit))
            raw = handle.read().decode("utf-8", errors="replace").splitlines()[-limit:]
        out: list[tuple[int, Stream, str, float]] = []
        pattern = re.compile(r"(\S+)Z \[(-?\d+)/(stdout|stderr|platform)\] ?(.*)")
        for line in raw:
            match = pattern.fullmatch(line)
            if match is None:
                continue
            at = calendar.timegm(time.strptime(match[1], "%Y-%m-%dT%H:%M:%S"))
            stream: Stream = match[3]  # type: ignore[assignment]
            out.append((int(match[2]), stream, match[4], float(at)))
        return out

    def _rotate(self, path: Path) -> None:
        for n in range(self.keep, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if n == self.keep:
                older.unlink(missing_ok=True)
            elif older.exists():
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
        if self.keep:
            os.replace(path, path.with_name(f"{path.name}.1"))
        else:
            path.unlink(missing_ok=True)


class _AppLog:
    """One app's open log file; rotates it when it grows past the limit."""

    def __init__(self, files: LogFiles, path: Path) -> None:
        self.files = files
        self.path = path
        self.handle = path.open("a", encoding="utf-8", errors="replace")

    def __call__(self, line: LogLine) -> None:
        if self.handle.closed:
            self.handle = self.path.open("a", encoding="utf-8", errors="replace")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line.at))
        self.handle.write(f"{stamp}Z {line.format()}\n")
        self.handle.flush()
        if self.handle.tell() >= self.files.max_bytes:
            self.handle.close()
            self.files._rotate(self.path)
            self.handle = self.path.open("a", encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.handle.close()
