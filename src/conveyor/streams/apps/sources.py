"""Sources: http, time, file and load-generator."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from conveyor.streams.apps.base import AppContext
from conveyor.streams.apps.httpsource import HttpSource
from conveyor.streams.errors import StreamError
from conveyor.streams.messages import Message, csv_records

__all__ = ["FileSource", "HttpSource", "LoadGenerator", "TimeSource"]


def _idle(context: AppContext) -> None:
    """A finished source stays up (so the platform does not restart it) until asked to stop."""
    context.stopping.wait()


class LoadGenerator:
    """Synthetic events ``{"seq", "key", "amount", "x0".."xN"}``; deterministic for a seed."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.o = context.options

    def batches(self) -> Iterator[list[Message]]:
        rng = random.Random(self.o["seed"] * 1_000_003 + self.context.instance_index)
        count, rate, fields, keys = (
            self.o["count"],
            self.o["rate"],
            self.o["fields"],
            self.o["keys"],
        )
        size = self.context.batch_size
        if rate > 0:
            size = max(1, min(size, int(rate / 10) or 1))
        start = time.monotonic()
        seq = 0
        while (count == 0 or seq < count) and not self.context.stopping.is_set():
            n = size if count == 0 else min(size, count - seq)
            batch = []
            for i in range(seq, seq + n):
                payload: dict[str, Any] = {
                    "seq": i,
                    "key": f"k{rng.randrange(keys)}",
                    "amount": round(rng.uniform(-50.0, 200.0), 2),
                }
                for f in range(fields):
                    payload[f"x{f}"] = rng.gauss(0.0, 1.0)
                batch.append(Message(payload))
            seq += n
            yield batch
            if rate > 0:
                ahead = seq / rate - (time.monotonic() - start)
                if ahead > 0:
                    self.context.stopping.wait(ahead)
        _idle(self.context)

    def close(self) -> None:
        pass


class TimeSource:
    """``{"time": <epoch seconds>}`` every ``interval`` seconds."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def batches(self) -> Iterator[list[Message]]:
        count, interval = self.context.options["count"], self.context.options["interval"]
        sent = 0
        while (count == 0 or sent < count) and not self.context.stopping.wait(interval):
            yield [Message({"time": time.time()})]
            sent += 1
        _idle(self.context)

    def close(self) -> None:
        pass


class FileSource:
    """Reads each new file of a folder (JSON lines or CSV) and renames it ``<name>.done``.

    The rename happens after the file's messages are published, so a crash
    in between reads the file again (at-least-once).
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        # Already absolute and confined to the folders stream apps may use (see streams.paths).
        self.directory = Path(context.options["directory"])
        if not self.directory.is_dir():
            raise StreamError(f"file source: {self.directory} is not a folder")
        pattern = Path(context.options["pattern"])
        if pattern.is_absolute() or ".." in pattern.parts:
            raise StreamError(
                f"file source: --pattern={pattern} must name files inside --directory "
                "(no absolute path, no '..')"
            )
        self.outside: set[Path] = set()

    def _rows(self, path: Path) -> list[Any]:
        text = path.read_text(encoding="utf-8")
        if self.context.options["format"] == "csv":
            return csv_records(text)
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise StreamError(f"{path}:{number}: not JSON: {exc}") from None
        return rows

    def batches(self) -> Iterator[list[Message]]:
        pattern = self.context.options["pattern"]
        while not self.context.stopping.is_set():
            for path in sorted(self.directory.glob(pattern)):
                if not path.is_file() or path.suffix in (".done", ".failed"):
                    continue
                if not path.resolve().is_relative_to(self.directory):
                    if path not in self.outside:  # a symlink out of the folder: never read
                        self.outside.add(path)
                        self.context.log.warning("file source: %s leads outside; skipped", path)
                    continue
                try:
                    rows = self._rows(path)
                except (StreamError, OSError, UnicodeDecodeError) as exc:
                    self.context.log.error("file source: %s; renamed to .failed", exc)
                    path.rename(path.with_name(path.name + ".failed"))
                    continue
                size = self.context.batch_size
                for i in range(0, len(rows), size):
                    yield [Message(r) for r in rows[i : i + size]]
                path.rename(path.with_name(path.name + ".done"))
                if self.context.stopping.is_set():
                    return
            self.context.stopping.wait(self.context.options["interval"])

    def close(self) -> None:
        pass
