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
