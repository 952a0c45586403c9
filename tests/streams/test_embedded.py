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
