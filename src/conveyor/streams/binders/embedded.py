"""The embedded binder: a durable append-only log in one SQLite file, shared by processes.

Zero setup: every stream app of one machine opens the same file (by default
``$CONVEYOR_HOME/streams.db``). Each destination is an ordered log; each
consumer group keeps the next sequence number to hand out, and every batch
handed out is a *lease* (a range of sequence numbers, a consumer and a
deadline). Acknowledging deletes the lease; a lease whose deadline passed —
its consumer died — is handed to the next consumer of the group that asks.
Messages every group has moved past are deleted from time to time.

WAL mode with ``synchronous=NORMAL``: a crashed process loses nothing it
published; a power cut may lose the last transactions.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from conveyor.streams.binders.base import Received
from conveyor.streams.errors import BinderError
from conveyor.streams.messages import Message, decode, encode

__all__ = ["EmbeddedBinder"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (dest TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    dest TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (dest, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    dest TEXT NOT NULL, grp TEXT NOT NULL, next_seq INTEGER NOT NULL, PRIMARY KEY (dest, grp)
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dest TEXT NOT NULL, grp TEXT NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, consumer TEXT NOT NULL, deadline REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_group ON leases (dest, grp, deadline);
"""

#: Trim acknowledged messages after this many acknowledgements of one consumer.
_TRIM_EVERY = 64


class EmbeddedBinder:
    """Destinations in a SQLite file; ``lease`` is how long a consumer may hold a batch."""

    kind = "embedded"

    def __init__(self, path: Path, *, lease: float = 30.0) -> None:
        self.path = path
        self.lease = lease
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._setup()
        except (sqlite3.Error, OSError) as exc:
            raise BinderError(f"embedded binder: cannot open {path}: {exc}") from exc

    def _setup(self) -> None:
        """WAL mode and the schema; retried, since switching to WAL ignores the busy timeout."""
        deadline = time.monotonic() + 30.0
        pause = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                with self._lock:
                    self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                # Another process is creating the same file at the same moment.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _write(self, fn: Callable[..., T], *args: object) -> T:
        """Run one of the ``_tx_*`` methods inside an immediate (writer) transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(*args)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise BinderError(f"embedded binder ({self.path}): {exc}") from exc

    def _tx_provision(self, destination: str, group: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO groups (dest, grp, next_seq) VALUES (?, ?, 1)",
            (destination, group),
        )

    def provision(self, destination: str, group: str) -> None:
        self._write(self._tx_provision, destination, group)

    def _tx_publish(self, destination: str, bodies: list[bytes]) -> None:
        row = self._db.execute(
            "SELECT last_seq FROM heads WHERE dest = ?", (destination,)
        ).fetchone()
        last = row[0] if row else 0
        self._db.executemany(
            "INSERT INTO messages (dest, seq, body) VALUES (?, ?, ?)",
            [(destination, last + i, body) for i, body in enumerate(bodies, 1)],
        )
        self._db.execute(
            "INSERT INTO heads (dest, last_seq) VALUES (?, ?) "
            "ON CONFLICT (dest) DO UPDATE SET last_seq = excluded.last_seq",
            (destination, last + len(bodies)),
        )

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if messages:
            self._write(self._tx_publish, destination, [encode(m) for m in messages])

    def _tx_receive(
        self, destination: str, group: str, consumer: str, limit: int
    ) -> tuple[int, list[bytes], bool] | None:
        now = time.time()
        expired = self._db.execute(
            "SELECT id, lo, hi FROM leases WHERE dest = ? AND grp = ? AND deadline < ? "
            "ORDER BY id LIMIT 1",
            (destination, group, now),
        ).fetchone()
        if expired is not None:
            lease_id, lo, hi = expired
            self._db.execute(
                "UPDATE leases SET consumer = ?, deadline = ? WHERE id = ?",
                (consumer, now + self.lease, lease_id),
            )
            rows = self._db.execute(
                "SELECT body FROM messages WHERE dest = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (destination, lo, hi),
            ).fetchall()
            return lease_id, [r[0] for r in rows], True
        self._tx_provision(destination, group)
        (next_seq,) = self._db.execute(
            "SELECT next_seq FROM groups WHERE dest = ? AND grp = ?", (destination, group)
        ).fetchone()
        rows = self._db.execute(
            "SELECT seq, body FROM messages WHERE dest = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (destination, next_seq, limit),
        ).fetchall()
        if not rows:
            return None
        lo, hi = rows[0][0], rows[-1][0]
        self._db.execute(
            "UPDATE groups SET next_seq = ? WHERE dest = ? AND grp = ?",
            (hi + 1, destination, group),
        )
        cursor = self._db.execute(
            "INSERT INTO leases (dest, grp, lo, hi, consumer, deadline) VALUES (?, ?, ?, ?, ?, ?)",
            (destination, group, lo, hi, consumer, now + self.lease),
        )
        return int(cursor.lastrowid or 0), [r[1] for r in rows], False

    def _tx_ack(self, lease_id: int, consumer: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM leases WHERE id = ? AND consumer = ?", (lease_id, consumer)
        )
        return cursor.rowcount == 1

    def _tx_trim(self, destination: str) -> None:
        floor = self._db.execute(
            "SELECT MIN(s) FROM (SELECT MIN(next_seq) AS s FROM groups WHERE dest = ?1 "
            "UNION ALL SELECT MIN(lo) FROM leases WHERE dest = ?1)",
            (destination,),
        ).fetchone()[0]
        if floor is not None:
            self._db.execute(
                "DELETE FROM messages WHERE dest = ? AND seq < ?", (destination, floor)
            )

    def _tx_release(self, consumer: str) -> None:
        self._db.execute("UPDATE leases SET deadline = 0 WHERE consumer = ?", (consumer,))

    def _tx_delete(self, destination: str, groups: list[str]) -> None:
        for table in ("messages", "heads", "leases"):
            self._db.execute(f"DELETE FROM {table} WHERE dest = ?", (destination,))  # noqa: S608
        self._db.executemany(
            "DELETE FROM groups WHERE dest = ? AND grp = ?", [(destination, g) for g in groups]
        )

    def lag(self, destination: str, group: str) -> int | None:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT g.next_seq, COALESCE(h.last_seq, 0), "
                    "(SELECT COALESCE(SUM(hi - lo + 1), 0) FROM leases l "
                    " WHERE l.dest = g.dest AND l.grp = g.grp) "
                    "FROM groups g LEFT JOIN heads h ON h.dest = g.dest "
                    "WHERE g.dest = ? AND g.grp = ?",
                    (destination, group),
                ).fetchone()
            except sqlite3.Error as exc:
                raise BinderError(f"embedded binder ({self.path}): {exc}") from exc
        if row is None:
            return None
        next_seq, last_seq, leased = row
        return int(max(0, last_seq - next_seq + 1) + leased)

    def consumer(self, destination: str, group: str, *, name: str) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, destination, group, name)

    def delete(self, destination: str, groups: Iterable[str]) -> None:
        self._write(self._tx_delete, destination, list(groups))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EmbeddedConsumer:
    """A member of a group; its name must be unique among the live consumers of the group."""

    def __init__(self, binder: EmbeddedBinder, destination: str, group: str, name: str) -> None:
        self.binder = binder
        self.destination = destination
        self.group = group
        # Unique per process so a restarted instance never acknowledges its predecessor's lease.
        self.name = f"{name}:{id(self):x}:{time.time_ns()}"
        self._acks = 0
        binder.provision(destination, group)

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            got = self.binder._write(
                self.binder._tx_receive, self.destination, self.group, self.name, max_messages
            )
            if got is not None:
                lease_id, bodies, redelivered = got
                return Received(
                    self.destination, [decode(b) for b in bodies], lease_id, redelivered
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def ack(self, received: Received) -> None:
        # False when the lease expired and another consumer took it: those messages are
        # delivered again (at-least-once), and there is nothing more to do here.
        self.binder._write(self.binder._tx_ack, received.token, self.name)
        self._acks += 1
        if self._acks % _TRIM_EVERY == 0:
            self.binder._write(self.binder._tx_trim, self.destination)

    def close(self) -> None:
        self.binder._write(self.binder._tx_release, self.name)
