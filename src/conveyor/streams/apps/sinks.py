"""Sinks: log, file (JSON lines or CSV), sql and throughput."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import orjson

from conveyor.streams.apps.base import AppContext
from conveyor.streams.errors import StreamError
from conveyor.streams.expressions import Expression
from conveyor.streams.messages import Message

__all__ = ["FileSink", "LogSink", "SqlSink", "ThroughputSink"]

#: Latency histogram: buckets 2% wide, latencies below 1 microsecond counted as 1 microsecond.
_RATIO = 1.02
_LOG_RATIO = math.log(_RATIO)
_FLOOR = 1e-6


class LogSink:
    def __init__(self, context: AppContext) -> None:
        self.log = context.log
        self.level = logging.getLevelName(context.options["level"])
        self.expression: Expression = context.options["expression"]

    def write(self, messages: list[Message]) -> None:
        for m in messages:
            value = self.expression.evaluate(m.payload, m.headers)
            self.log.log(self.level, "%s", orjson.dumps(value, default=str).decode())

    def close(self) -> None:
        pass


class FileSink:
    """Appends payloads; each batch is written with one write and flushed to disk."""

    def __init__(self, context: AppContext) -> None:
        # Already absolute and confined to the folders stream apps may use (see streams.paths).
        self.path = Path(context.options["path"])
        self.csv = context.options["format"] == "csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        if self.csv and self.path.exists() and self.path.stat().st_size:
            with self.path.open(encoding="utf-8", newline="") as f:
                self.columns = next(csv.reader(f), None)

    def _csv(self, messages: list[Message]) -> bytes:
        out = io.StringIO()
        rows = []
        for m in messages:
            if not isinstance(m.payload, dict):
                raise StreamError("file --format=csv needs object payloads")
            rows.append(m.payload)
        header = self.columns is None
        if self.columns is None:
            self.columns = list(rows[0]) if rows else []
        writer = csv.DictWriter(out, self.columns, extrasaction="ignore")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")

    def write(self, messages: list[Message]) -> None:
        if self.csv:
            data = self._csv(messages)
        else:
            data = b"".join(orjson.dumps(m.payload) + b"\n" for m in messages)
        # O_NOFOLLOW: a symlink put in the file's place later does not redirect the writes.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StreamError(f"file sink: cannot write {self.path}: {exc}") from None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


class SqlSink:
    """Inserts payloads as rows; the table is created from the first batch's fields if missing."""

    def __init__(self, context: AppContext) -> None:
        import sqlalchemy as sa

        self.sa = sa
        try:
            url = sa.engine.make_url(context.options["url"])
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                # Confined already (see streams.paths); SQLite makes the file, not its folder.
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StreamError(f"sql: cannot use --url={context.options['url']!r}: {exc}") from None
        self.name = context.options["table"]
        self.table: Any = None

    def _table(self, sample: dict[str, Any]) -> Any:
        sa = self.sa
        metadata = sa.MetaData()
        try:
            return sa.Table(self.name, metadata, autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            types = {bool: sa.Boolean, int: sa.BigInteger, float: sa.Float}
            columns = [sa.Column(k, types.get(type(v), sa.Text)) for k, v in sample.items()]
            table = sa.Table(self.name, metadata, *columns)
            metadata.create_all(self.engine)
            return table

    def write(self, messages: list[Message]) -> None:
        rows = [m.payload for m in messages]
        if not all(isinstance(r, dict) for r in rows):
            raise StreamError("sql sink needs object payloads")
        if not rows:
            return
        try:
            if self.table is None:
                self.table = self._table(rows[0])
            names = set(self.table.columns.keys())
            clean = [
                {k: (orjson.dumps(v).decode() if isinstance(v, dict | list) else v)
                 for k, v in r.items() if k in names}
                for r in rows
            ]  # fmt: skip
            with self.engine.begin() as conn:
                conn.execute(self.table.insert(), clean)
        except self.sa.exc.SQLAlchemyError as exc:
            raise StreamError(f"sql sink: insert into {self.name} failed: {exc}") from None

    def close(self) -> None:
        self.engine.dispose()


class ThroughputSink:
    """Counts messages and end-to-end latency (now minus the ``created`` header).

    Latencies go into a histogram of 2%-wide buckets, so memory stays bounded
    and the percentiles cost the same after a billion messages as after ten.
    """

    def __init__(self, context: AppContext) -> None:
        self.log = context.log
        self.every: int = context.options["every"]
        self.report = Path(context.options["report"]) if context.options["report"] else None
        self.count = 0
        self.first: float | None = None
        self.buckets: dict[int, int] = {}
        self.timed = 0

    def write(self, messages: list[Message]) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        buckets = self.buckets
        for m in messages:
            created = m.headers.get("created")
            if isinstance(created, int | float):
                b = math.floor(math.log(max(now - created, _FLOOR)) / _LOG_RATIO)
                buckets[b] = buckets.get(b, 0) + 1
                self.timed += 1
        before = self.count
        self.count += len(messages)
        if self.count // self.every != before // self.every:
            self.log.info("throughput: %s", orjson.dumps(self.summary(now)).decode())
        if self.report is not None:
            tmp = self.report.with_name(self.report.name + ".tmp")
            tmp.write_bytes(orjson.dumps(self.summary(now)))
            tmp.replace(self.report)

    def percentile(self, q: float) -> float | None:
        """Latency (seconds, within 2%) below which a fraction ``q`` of the messages arrived."""
        if not self.timed:
            return None
        rank = q * self.timed
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return float(_RATIO ** (b + 0.5))
        return None

    def summary(self, now: float) -> dict[str, Any]:
        elapsed = now - (self.first or now)
        return {
            "count": self.count,
            "first": self.first,
            "last": now,
            "rate": self.count / elapsed if elapsed > 0 else None,
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
        }

    def close(self) -> None:
        pass
