"""The folder ledger: which runs worked in a project folder, when, and what they wrote.

One JSON-lines file per project root under ``$CONVEYOR_HOME/folders`` (named
by a digest of the root's path) holds three kinds of line, appended with one
``os.write`` each so parallel runs never tear each other's lines:

    {"type": "start", "run": "3f2a…", "time": …, "pid": 4242, "dir": "…/runs/3f2a…",
     "outputs": ["/abs/out.json"]}
    {"type": "output", "run": "3f2a…", "path": "out.json", "digest": "blake3:…", "size": 12}
    {"type": "end", "run": "3f2a…", "time": …}

From it a new run learns which runs are working in the same folder right now
(to warn about shared declared outputs), which overlapped it (to check who
wrote its outputs), and which files earlier runs produced (so the code
snapshot leaves them out). It is read without opening the registry, which
keeps ``conveyor run``'s start-up cheap.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.repro.journal import append_line, read_lines

__all__ = ["FolderLedger", "KnownOutput", "LedgerRun"]


@dataclass(frozen=True)
class KnownOutput:
    """A file an earlier run declared as its output, as it was when that run ended."""

    digest: str
    size: int
    run: str


@dataclass
class LedgerRun:
    """One run as the ledger saw it."""

    run: str
    start: float
    #: The run's folder (where its journal is).
    dir: str
    pid: int | None = None
    end: float | None = None
    outputs: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        """True while the run has not ended and its recorder process still exists."""
        if self.end is not None:
            return False
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class FolderLedger:
    """The ledger of one project root."""

    def __init__(self, home: Path, root: Path) -> None:
        key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.root = root
        self.path = home / "folders" / f"{key}.jsonl"

    def _append(self, kind: str, **fields: Any) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        append_line(self.path, {"type": kind, **fields})

    def started(
        self, run: str, when: float, *, pid: int, run_dir: Path, outputs: list[str]
    ) -> None:
        """Note that ``run`` (recorded by process ``pid``) began, declaring ``outputs``."""
        self._append("start", run=run, time=when, pid=pid, dir=str(run_dir), outputs=outputs)

    def ended(self, run: str, when: float, outputs: dict[str, tuple[str, int]]) -> None:
        """Note the end of ``run`` and the outputs it recorded (path relative to root)."""
        for path, (digest, size) in outputs.items():
            self._append("output", run=run, path=path, digest=digest, size=size)
        self._append("end", run=run, time=when)

    def runs(self) -> dict[str, LedgerRun]:
        found: dict[str, LedgerRun] = {}
        for entry in read_lines(self.path):
            kind, run = entry.get("type"), str(entry.get("run"))
            if kind == "start":
                found[run] = LedgerRun(
                    run,
                    float(entry["time"]),
                    str(entry["dir"]),
                    entry.get("pid"),
                    None,
                    list(entry["outputs"]),
                )
            elif kind == "end" and run in found:
                found[run].end = float(entry["time"])
        return found

    def known_outputs(self) -> dict[str, list[KnownOutput]]:
        """Every output path earlier runs recorded here, with each digest they recorded."""
        found: dict[str, list[KnownOutput]] = {}
        for entry in read_lines(self.path):
            if entry.get("type") == "output":
                found.setdefault(str(entry["path"]), []).append(
                    KnownOutput(str(entry["digest"]), int(entry["size"]), str(entry["run"]))
                )
        return found
