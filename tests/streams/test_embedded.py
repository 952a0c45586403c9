"""What only the embedded binder has to get right: one file shared by processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_OPEN = """
import sys
from pathlib import Path
from conveyor.streams.binders.embedded import EmbeddedBinder
binder = EmbeddedBinder(Path(sys.argv[1]))
binder.provision("d", "g")
print("opened")
"""


def test_processes_opening_a_new_log_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "streams.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == ["opened"] * 6


def test_messages_every_group_acknowledged_are_deleted(tmp_path: Path) -> None:
    import sqlite3

    from conveyor.streams.binders.embedded import EmbeddedBinder
    from conveyor.streams.messages import Message

    path = tmp_path / "streams.db"
    binder = EmbeddedBinder(path)
    for group in ("fast", "slow"):
        binder.provision("d", group)
    binder.publish("d", [Message({"n": n}) for n in range(200)])

    def stored() -> int:
        with sqlite3.connect(path) as db:
            count: int = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            return count

    fast = binder.consumer("d", "fast", name="f")
    for _ in range(64):  # trimming runs every 64 acknowledgements
        batch = fast.receive(3, timeout=1.0)
        assert batch is not None
        fast.ack(batch)
    assert stored() == 200  # the slow group still needs them all
    slow = binder.consumer("d", "slow", name="s")
    for _ in range(64):
        batch = slow.receive(2, timeout=1.0)
        assert batch is not None
        slow.ack(batch)
    assert stored() == 200 - 128  # both groups are past the first 128
    assert binder.lag("d", "slow") == 72
    fast.close()
    slow.close()
    binder.close()


def _disk(path: Path) -> int:
    """Bytes the log takes on disk: the file and its write-ahead log."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _round_trip(binder: object, consumer: object, payloads: list[object]) -> None:
    from conveyor.streams.messages import Message

    binder.publish("d", [Message(p) for p in payloads])  # type: ignore[attr-defined]
    got = 0
    while got < len(payloads):
        batch = consumer.receive(4, timeout=1.0)  # type: ignore[attr-defined]
        assert batch is not None
        got += len(batch.messages)
        consumer.ack(batch)  # type: ignore[attr-defined]


def test_acknowledged_large_messages_give_their_space_back(tmp_path: Path) -> None:
    from conveyor.streams.binders.embedded import EmbeddedBinder

    path = tmp_path / "streams.db"
    binder = EmbeddedBinder(path)
    binder.provision("d", "g")
    consumer = binder.consumer("d", "g", name="c")
    big = "x" * (1024 * 1024)
    sizes = []
    for round_ in range(12):  # 96 messages of 1 MiB, all acknowledged
        _round_trip(binder, consumer, [{"round": round_, "n": n, "body": big} for n in range(8)])
        sizes.append(_disk(path))
    consumer.close()
    binder.close()
    # Nothing is left unacknowledged: the log stays within a fixed slack, round after round.
    slack = 24 * 1024 * 1024
    assert max(sizes) < slack, sizes


def test_the_file_shrinks_once_a_backlog_is_acknowledged(tmp_path: Path) -> None:
    from conveyor.streams.binders.embedded import EmbeddedBinder
    from conveyor.streams.messages import Message

    path = tmp_path / "streams.db"
    binder = EmbeddedBinder(path)
    binder.provision("d", "g")
    body = "x" * (16 * 1024)
    for n in range(0, 3072, 64):  # a 48 MiB backlog: the consumer was away
        binder.publish("d", [Message({"n": n + i, "body": body}) for i in range(64)])
    backlog = _disk(path)
    assert backlog > 48 * 1024 * 1024
    consumer = binder.consumer("d", "g", name="c")
    seen = 0
    while seen < 3072:
        batch = consumer.receive(64, timeout=1.0)
        assert batch is not None
        seen += len(batch.messages)
        consumer.ack(batch)
    # Nothing is unacknowledged any more: the file gives the backlog's space back.
    assert _disk(path) < 16 * 1024 * 1024, (backlog, _disk(path))
    consumer.close()
    binder.close()


def test_a_group_with_no_live_consumer_keeps_only_the_retention(tmp_path: Path) -> None:
    from conveyor.streams.binders.embedded import EmbeddedBinder

    path = tmp_path / "streams.db"
    now = [1_000_000.0]
    binder = EmbeddedBinder(path, retention_bytes=2 * 1024 * 1024, clock=lambda: now[0])
    binder.provision("d", "g")
    binder.provision("d", "dead-tap")  # its stream was undeployed: nobody polls it any more
    now[0] += 3600  # ... for an hour; the live group's consumer polls from now on
    consumer = binder.consumer("d", "g", name="c")
    big = "x" * (512 * 1024)
    sizes = []
    for round_ in range(12):  # 48 MiB published in all
        _round_trip(binder, consumer, [{"round": round_, "n": n, "body": big} for n in range(8)])
        sizes.append(_disk(path))
    assert max(sizes) < 24 * 1024 * 1024, sizes
    # The dead tap's group keeps the newest messages within its retention, in order.
    tap = binder.consumer("d", "dead-tap", name="t")
    batch = tap.receive(100, timeout=1.0)
    assert batch is not None
    kept = [(m.payload["round"], m.payload["n"]) for m in batch.messages]
    assert 0 < len(kept) <= 4  # 2 MiB of 512 KiB messages
    assert kept == [(11, n) for n in range(8 - len(kept), 8)]
    consumer.close()
    tap.close()
    binder.close()


def test_a_log_file_from_an_earlier_release_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from conveyor.streams.binders.embedded import EmbeddedBinder
    from conveyor.streams.messages import Message, encode

    path = tmp_path / "streams.db"
    with sqlite3.connect(path) as old:  # the first release's layout, without auto-vacuum
        old.executescript(
            "CREATE TABLE heads (dest TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);"
            "CREATE TABLE messages (dest TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,"
            " PRIMARY KEY (dest, seq)) WITHOUT ROWID;"
            "CREATE TABLE groups (dest TEXT NOT NULL, grp TEXT NOT NULL,"
            " next_seq INTEGER NOT NULL, PRIMARY KEY (dest, grp));"
            "INSERT INTO heads VALUES ('d', 1); INSERT INTO groups VALUES ('d', 'g', 1);"
        )
        old.execute("INSERT INTO messages VALUES ('d', 1, ?)", (encode(Message({"n": 1})),))
    binder = EmbeddedBinder(path)
    binder.publish("d", [Message({"n": 2})])
    consumer = binder.consumer("d", "g", name="c")
    batch = consumer.receive(10, timeout=1.0)
    assert batch is not None
    assert [m.payload for m in batch.messages] == [{"n": 1}, {"n": 2}]
    consumer.close()
    binder.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_retention_is_set_in_the_binder_url(tmp_path: Path) -> None:
    import pytest

    from conveyor.config import Settings
    from conveyor.streams.binders import open_binder
    from conveyor.streams.binders.embedded import EmbeddedBinder
    from conveyor.streams.errors import BinderError

    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})
    url = f"embedded://{tmp_path / 'log.db'}?retention-age=3600&retention-size=2M"
    binder = open_binder(url, settings)
    assert isinstance(binder, EmbeddedBinder)
    assert (binder.retention_age, binder.retention_bytes) == (3600.0, 2 * 1024 * 1024)
    binder.close()
    for bad, error in (
        ("retention-age=-1", "positive number of seconds"),
        ("retention-size=big", "not a size"),
    ):
        with pytest.raises(BinderError, match=error):
            open_binder(f"embedded://{tmp_path / 'log.db'}?{bad}", settings)
