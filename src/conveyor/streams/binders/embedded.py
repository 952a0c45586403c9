"""The embedded binder: a durable append-only log in one SQLite file, shared by processes.

Zero setup: every stream app of one machine opens the same file (by default
``$CONVEYOR_HOME/streams/log.db``). Each destination is an ordered log; each
consumer group keeps the next sequence number to hand out, and every batch
handed out is a *lease* (a range of sequence numbers, a consumer and a
deadline). Acknowledging deletes the lease; a lease whose deadline passed —
its consumer died — is handed to the next consumer of the group that asks.
Messages every group has moved past are deleted after every 64
acknowledgements or every 4 MiB acknowledged, whichever comes first, and the
file gives the space back (SQLite's incremental vacuum) once a quarter of it is
free, so the file stays about the size of what is unacknowledged.

A group no consumer has polled for a minute (a tap whose stream was undeployed)
would otherwise keep every message forever: for such a group, messages older
than ``retention_age`` or past the newest ``retention_bytes`` are skipped.
Groups with a live consumer never lose a message.

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
    dest TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (dest, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    dest TEXT NOT NULL, grp TEXT NOT NULL, next_seq INTEGER NOT NULL,
    polled REAL NOT NULL DEFAULT 0, PRIMARY KEY (dest, grp)
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dest TEXT NOT NULL, grp TEXT NOT NULL,
    lo INTEGER NOT NULL, hi INTEGER NOT NULL, consumer TEXT NOT NULL, deadline REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_group ON leases (dest, grp, deadline);
"""

#: Trim acknowledged messages after this many acknowledgements of one consumer...
_TRIM_EVERY = 64
#: ... or this many bytes acknowledged, so large messages do not wait for 64 acknowledgements.
_TRIM_BYTES = 4 * 1024 * 1024
#: Give free pages back to the file system when at least this much, and a quarter, is free.
_VACUUM_BYTES = 4 * 1024 * 1024
#: Apply retention to a destination after this many bytes were published to it.
_RETAIN_BYTES = 4 * 1024 * 1024
#: A group whose consumers have not polled for this long has no live consumer.
_LIVE = 60.0
#: Columns added since the first release, added to log files that lack them.
_ADDED = (
    ("messages", "at", "REAL NOT NULL DEFAULT 0"),
    ("groups", "polled", "REAL NOT NULL DEFAULT 0"),
)


class EmbeddedBinder:
    """Destinations in a SQLite file; ``lease`` is how long a consumer may hold a batch.

    ``retention_age`` (seconds) and ``retention_bytes`` bound what is kept for a
    group with no live consumer; ``clock`` gives the time (seconds since the epoch).
    """

    kind = "embedded"

    def __init__(
        self,
        path: Path,
        *,
        lease: float = 30.0,
        retention_age: float = 7 * 24 * 3600.0,
        retention_bytes: int = 1024 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.clock = clock
        self.lease = lease
        self.retention_age = retention_age
        self.retention_bytes = retention_bytes
        self._published: dict[str, int] = {}  # bytes published per destination since retention
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
                # Only takes effect before the first table exists; older files are converted below.
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # A checkpointed WAL is cut back to this size instead of keeping its largest.
                self._db.execute(f"PRAGMA journal_size_limit={_VACUUM_BYTES}")
                with self._lock:
                    self._db.executescript(_SCHEMA)
                    self._upgrade()
                return
            except sqlite3.OperationalError as exc:
                # Another process is creating the same file at the same moment.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _upgrade(self) -> None:
        """Bring a log file made by an earlier release to the current layout (once)."""
        for table, column, declaration in _ADDED:
            names = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in names:  # names from _ADDED above, never from outside
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # Switching an existing file to incremental vacuum needs one full VACUUM.
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")

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
        # A new group counts as live for a while: its consumer may not have started yet.
        self._db.execute(
            "INSERT OR IGNORE INTO groups (dest, grp, next_seq, polled) VALUES (?, ?, 1, ?)",
            (destination, group, self.clock()),
        )

    def _tx_poll(self, destination: str, group: str) -> None:
        """Provision the group and note that a consumer of it is live."""
        self._tx_provision(destination, group)
        self._db.execute(
            "UPDATE groups SET polled = ? WHERE dest = ? AND grp = ?",
            (self.clock(), destination, group),
        )

    def provision(self, destination: str, group: str) -> None:
        self._write(self._tx_provision, destination, group)

    def _tx_publish(self, destination: str, bodies: list[bytes]) -> None:
        row = self._db.execute(
            "SELECT last_seq FROM heads WHERE dest = ?", (destination,)
        ).fetchone()
        last = row[0] if row else 0
        now = self.clock()
        self._db.executemany(
            "INSERT INTO messages (dest, seq, body, at) VALUES (?, ?, ?, ?)",
            [(destination, last + i, body, now) for i, body in enumerate(bodies, 1)],
        )
        self._db.execute(
            "INSERT INTO heads (dest, last_seq) VALUES (?, ?) "
            "ON CONFLICT (dest) DO UPDATE SET last_seq = excluded.last_seq",
            (destination, last + len(bodies)),
        )

    def publish(self, destination: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        bodies = [encode(m) for m in messages]
        self._write(self._tx_publish, destination, bodies)
        # The publisher applies retention: a dead tap has no consumer that would.
        published = self._published.get(destination, 0) + sum(map(len, bodies))
        self._published[destination] = published
        if published >= _RETAIN_BYTES:
            self._published[destination] = 0
            self._write(self._tx_retain, destination)
            self.vacuum()

    def _tx_receive(
        self, destination: str, group: str, consumer: str, limit: int
    ) -> tuple[int, list[bytes], bool] | None:
        now = self.clock()
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
        self._tx_poll(destination, group)
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

    def _tx_retain(self, destination: str) -> None:
        """Skip, for groups with no live consumer, messages past the retention limits."""
        now = self.clock()
        dead = self._db.execute(
            "SELECT grp FROM groups WHERE dest = ? AND polled < ?", (destination, now - _LIVE)
        ).fetchall()
        if not dead:
            return
        (too_old,) = self._db.execute(
            "SELECT MAX(seq) FROM messages WHERE dest = ? AND at < ?",
            (destination, now - self.retention_age),
        ).fetchone()
        (too_many,) = self._db.execute(
            "SELECT MAX(seq) FROM (SELECT seq, SUM(length(body)) OVER (ORDER BY seq DESC) AS "
            "newer FROM messages WHERE dest = ?) WHERE newer > ?",
            (destination, self.retention_bytes),
        ).fetchone()
        cut = max(too_old or 0, too_many or 0)
        if not cut:
            return
        for (group,) in dead:
            self._db.execute(
                "UPDATE groups SET next_seq = MAX(next_seq, ?) WHERE dest = ? AND grp = ?",
                (cut + 1, destination, group),
            )
            self._db.execute(
                "DELETE FROM leases WHERE dest = ? AND grp = ? AND hi <= ?",
                (destination, group, cut),
            )
        self._tx_trim(destination)

    def vacuum(self) -> None:
        """Give the file's free pages back once they are many (after trimming)."""
        with self._lock:
            try:
                free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
                pages = self._db.execute("PRAGMA page_count").fetchone()[0]
                size = self._db.execute("PRAGMA page_size").fetchone()[0]
                if free * size >= _VACUUM_BYTES and free * 4 >= pages:
                    # Through sqlite3_exec: stepped once by execute(), it frees a single page.
                    self._db.executescript("PRAGMA incremental_vacuum;")
                    # The file shrinks once the WAL is copied back; without waiting for readers.
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise BinderError(f"embedded binder ({self.path}): {exc}") from exc

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
        self._acked_bytes = 0
        self._sizes: dict[int, int] = {}  # bytes of each batch held, by lease
        binder._write(binder._tx_poll, destination, group)  # the group has a live consumer

    def receive(self, max_messages: int, timeout: float) -> Received | None:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            got = self.binder._write(
                self.binder._tx_receive, self.destination, self.group, self.name, max_messages
            )
            if got is not None:
                lease_id, bodies, redelivered = got
                self._sizes[lease_id] = sum(map(len, bodies))
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
        self._acked_bytes += self._sizes.pop(received.token, 0)
        if self._acks % _TRIM_EVERY == 0 or self._acked_bytes >= _TRIM_BYTES:
            self._acked_bytes = 0
            self.binder._write(self.binder._tx_trim, self.destination)
            self.binder.vacuum()

    def close(self) -> None:
        self.binder._write(self.binder._tx_release, self.name)
