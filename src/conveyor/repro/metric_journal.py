"""The run's metric file: what ``log_metric`` appends and the recorder's feed reads.

Metric values are the one event a script may log a million times, so they
go to a file of their own (``metrics.bin``), packed, in frames of up to
METRIC_BATCH values, each frame appended by one ``os.write`` with O_APPEND
(frames of several processes never interleave)::

    frame   = head names records
    head    = b"CVM1" <body length> <crc32 of body> <length of names>  (4 bytes each, little end)
    names   = the frame's metric names, a JSON array; a record holds an index into it
    records = <step int64> <value float64> <time float64> <name index uint32>, 28 bytes each

A step that is no integer of 64 bits is written as NO_STEP. The checksum
lets the reader skip a frame a writer killed mid-write left torn. Standard
library only: this module is imported inside the user's process.
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

__all__ = [
    "METRICS_NAME",
    "NO_STEP",
    "RECORD",
    "append_metric",
    "flush_metrics",
    "read_metric_frames",
]

METRICS_NAME = "metrics.bin"

#: Dense metric logging is written in frames of this many values ...
METRIC_BATCH = 1000
#: ... or after this long; logging sparser than that writes every value at once.
METRIC_INTERVAL = 0.5

MAGIC = b"CVM1"
_HEAD = struct.Struct("<4sIII")
RECORD = struct.Struct("<qddI")
#: The step of a value logged without one (or with one that is not a 64-bit integer).
NO_STEP = -(2**63)


class _MetricBuffer:
    """Metric records waiting to be appended in one write: a training loop's step costs < 1 µs.

    One ``os.write`` per step (open, write, close) cost about 17 µs, and a text
    line per value 1.7 µs, most of it ``repr`` of two floats; a packed record
    costs 0.2 µs. Records wait at most METRIC_INTERVAL while steps keep coming
    and are written at exit; a SIGKILL loses at most that half second of steps.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[bytes] = []
        #: The names of the frame being filled -> their index in it.
        self.keys: dict[str, int] = {}
        self.run_dir: str | Path | None = None
        self.path: Path | None = None
        self.flushed = 0.0

    def add(self, run_dir: str | Path, key: str, value: float, step: int | None) -> None:
        """Journal one metric value of the run in ``run_dir``; written within half a second."""
        now = _now()
        with self.lock:
            if self.run_dir != run_dir:
                self._write()
                self.run_dir, self.path = run_dir, Path(run_dir) / METRICS_NAME
            index = self.keys.get(key)
            if index is None:
                index = self.keys[key] = len(self.keys)
            try:
                self.records.append(_pack(NO_STEP if step is None else step, value, now, index))
            except struct.error:  # 2.5, 10**30: "q" takes what operator.index takes
                self.records.append(_pack(NO_STEP, value, now, index))
            if len(self.records) >= METRIC_BATCH or not 0.0 <= now - self.flushed < METRIC_INTERVAL:
                self._write()
                self.flushed = now

    def flush(self) -> None:
        with self.lock:
            self._write()

    def forget(self) -> None:
        """In a forked child: the parent writes what it had buffered.

        A multiprocessing child ends by ``os._exit``, which runs no atexit
        function: its steps are written by a multiprocessing finalizer instead
        (registered once the child has cleared its parent's, see
        ``multiprocessing.util.register_after_fork``).
        """
        self.lock = threading.Lock()
        self.records, self.keys = [], {}
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.register_after_fork(self, _flush_at_child_exit)

    def _write(self) -> None:
        if not self.records or self.path is None:
            return
        # A name that is no string (log_metric(5, ...)) is recorded as its text, "5".
        names = json.dumps(list(map(str, self.keys)), separators=(",", ":")).encode()
        body = names + b"".join(self.records)
        frame = _HEAD.pack(MAGIC, len(body), zlib.crc32(body), len(names)) + body
        self.records, self.keys = [], {}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, frame)
        finally:
            os.close(fd)


def _flush_at_child_exit(buffer: _MetricBuffer) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, buffer.flush, exitpriority=10)


_now = time.time
_pack = RECORD.pack
_metrics = _MetricBuffer()
atexit.register(_metrics.flush)
os.register_at_fork(after_in_child=_metrics.forget)

#: ``append_metric(run_dir, key, value, step)``: the bound method, a call frame less a step.
append_metric = _metrics.add


def flush_metrics() -> None:
    """Write the metric values still buffered (before the run is read, or another event)."""
    _metrics.flush()


def read_metric_frames(data: bytes) -> tuple[list[tuple[list[str], bytes]], int]:
    """The whole frames in ``data`` as (names, packed records), and the bytes read past.

    A frame torn by a writer killed mid-write is skipped once an intact frame
    follows it (the checksum tells); a frame not yet whole at the end waits:
    the bytes read past stop before it.
    """
    frames: list[tuple[list[str], bytes]] = []
    at, end = 0, len(data)
    while at < end:
        frame = _frame_at(data, at)
        if frame is not None:
            frames.append(frame[:2])
            at += frame[2]
            continue
        following = _next_frame(data, at + 1)
        if following is None:
            if not _may_grow(data, at):
                at = max(at, end - len(MAGIC) + 1)  # garbage: only a frame's start may follow
            break
        at = following
    return frames, at


def _may_grow(data: bytes, at: int) -> bool:
    """Whether the bytes at ``at`` may be a frame still being written."""
    rest = len(data) - at
    if rest < _HEAD.size:
        return data.startswith(MAGIC[:rest], at)
    if not data.startswith(MAGIC, at):
        return False
    length: int = _HEAD.unpack_from(data, at)[1]
    return rest < _HEAD.size + length


def _frame_at(data: bytes, at: int) -> tuple[list[str], bytes, int] | None:
    """The whole, intact frame at ``at`` as (names, records, size), if there is one."""
    if len(data) - at < _HEAD.size or not data.startswith(MAGIC, at):
        return None
    _, length, crc, names = _HEAD.unpack_from(data, at)
    start = at + _HEAD.size
    body = data[start : start + length]
    if len(body) < length or names > length or (length - names) % RECORD.size:
        return None
    if zlib.crc32(body) != crc:
        return None
    try:
        keys = json.loads(body[:names])
    except ValueError:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return keys, body[names:], _HEAD.size + length


def _next_frame(data: bytes, start: int) -> int | None:
    """Where the first intact frame at or after ``start`` begins, if one is whole in ``data``."""
    at = data.find(MAGIC, start)
    while at != -1:
        if _frame_at(data, at) is not None:
            return at
        at = data.find(MAGIC, at + 1)
    return None
