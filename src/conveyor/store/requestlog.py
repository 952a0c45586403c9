"""The request log: which app revision and model answered a request id, for ``conveyor lineage``.

Each serving process (each worker) appends to files of its own in its app's
folder under ``Settings.request_log_root``, so processes never tear each
other's lines. A file opens with one header line naming what the process
serves; then come time marks and request ids, written in batches (one
``os.write`` per flush, at most once a second or every 1,024 ids)::

    #{"app": "churn", "revision": 3, "model": "churn", "digest": "blake3:ab..", "run": "01J.."}
    @1733412345678
    5f0c9a...00000001
    5f0c9a...00000002

An id belongs to the time mark above it (the flush that wrote it, within a
second of its answer). A file is closed at ``max_bytes`` and a new one begun;
files older than the retention are deleted by the writers, and readers
ignore them, so the log stays bounded whatever the traffic.

>>> import tempfile; folder = Path(tempfile.mkdtemp())
>>> log = RequestLogWriter(folder, {"app": "churn", "revision": 3})
>>> log.record("req-1"); log.close()
>>> find_request(folder.parent, "req-1").header["revision"]
3
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RequestHit", "RequestLogWriter", "find_request", "oldest_record"]

#: Ids buffered before a flush is forced.
FLUSH_EVERY = 1024
_PATTERN = "requests-*.log"


class RequestLogWriter:
    """Appends the ids of (a sample of) the requests one process answers; cheap per request."""

    def __init__(
        self,
        folder: Path,
        header: Mapping[str, Any],
        *,
        sample: float = 1.0,
        max_bytes: int = 8 << 20,
        retention: float = 7 * 86400.0,
        clock: Any = time.time,
    ) -> None:
        self.folder = folder
        self.header = dict(header)
        self.sample = sample
        self.max_bytes = max_bytes
        self.retention = retention
        self._clock = clock
        self._random = random.random
        self._pending: list[str] = []
        self._fd = -1
        self._size = 0
        self._files = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def record(self, request_id: str) -> None:
        """Note ``request_id`` (if sampled); written at the next :meth:`flush`."""
        if self.sample < 1.0 and self._random() >= self.sample:
            return
        pending = self._pending
        pending.append(request_id)
        if len(pending) >= FLUSH_EVERY:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write the ids noted since the last flush under one time mark; never raises."""
        if not self._pending:
            return
        ids, self._pending = self._pending, []
        data = ("@%d\n%s\n" % (self._clock() * 1000, "\n".join(ids))).encode()  # noqa: UP031
        try:
            if self._fd < 0 or self._size + len(data) > self.max_bytes:
                self._rotate()
            os.write(self._fd, data)
            self._size += len(data)
        except OSError:
            # A full disk or a removed folder must not fail the requests being answered.
            self._close_file()

    def close(self) -> None:
        self.flush()
        self._close_file()

    def _rotate(self) -> None:
        self._close_file()
        self._sweep()
        self._files += 1
        name = f"requests-{int(self._clock() * 1000)}-{os.getpid()}-{self._files}.log"
        head = ("#" + json.dumps(self.header, sort_keys=True) + "\n").encode()
        self._fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, head)
        self._size = len(head)

    def _close_file(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1

    def _sweep(self) -> None:
        """Delete this folder's files that ended before the retention window."""
        limit = self._clock() - self.retention
        for path in self.folder.glob(_PATTERN):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < limit:
                    path.unlink()


@dataclass(frozen=True)
class RequestHit:
    """Where a request id was found: what answered it, and when."""

    request_id: str
    #: The serving process's header: app, revision, model, digest, run, source.
    header: dict[str, Any]
    #: When it was answered (to within a flush, about a second).
    at: float
    file: Path


def _files(root: Path, retention: float | None, now: float) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob(_PATTERN), key=lambda p: p.name, reverse=True):
        with contextlib.suppress(OSError):
            if retention is None or path.stat().st_mtime >= now - retention:
                yield path


def find_request(
    root: Path, request_id: str, *, retention: float | None = None, now: float | None = None
) -> RequestHit | None:
    """The record of ``request_id`` in any request log under ``root``, newest files first."""
    needle = ("\n" + request_id + "\n").encode()
    for path in _files(root, retention, time.time() if now is None else now):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        at = data.find(needle)
        if at < 0:
            continue
        head, _, _ = data.partition(b"\n")
        mark = data.rfind(b"\n@", 0, at + 1)
        when = float(data[mark + 2 : data.index(b"\n", mark + 1)]) / 1000 if mark >= 0 else 0.0
        try:
            header = json.loads(head[1:]) if head.startswith(b"#") else {}
        except ValueError:
            header = {}
        return RequestHit(request_id, header, when, path)
    return None


def oldest_record(root: Path, *, retention: float | None = None) -> float | None:
    """When the oldest request log file under ``root`` was begun (None: there is none)."""
    oldest: float | None = None
    for path in _files(root, retention, time.time()):
        stem = path.name.split("-")
        if len(stem) >= 3 and stem[1].isdigit():
            began = int(stem[1]) / 1000
            oldest = began if oldest is None else min(oldest, began)
    return oldest
