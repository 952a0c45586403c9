"""What a finished run's journal says about how far its record can be trusted.

The recorder stores what a run declared; these checks compare that with what
its processes actually did (the ``read``/``write``/``param`` events the
start-up hook and the API journal) and with the other runs of the same
project folder (the folder ledger):

- parameters given with ``--param`` that the code never read (a typo records a
  value that was never used);
- files read from the project that are neither code nor declared inputs (kept
  by digest when small enough, so ``reproduce`` can restore them);
- outputs another run wrote while this one was writing them, or that changed
  outside this run's lifetime.

Each finding lands in ``environment["checks"]`` of the run; :func:`warnings_of`
turns them into the sentences ``conveyor run`` and ``runs show`` print.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.repro.journal import read_events
from conveyor.repro.ledger import FolderLedger
from conveyor.repro.snapshot import human_size, read_links, read_manifest
from conveyor.store.blobs import BlobStore
from conveyor.store.records import FileRecord, RunRecord

__all__ = [
    "FileActivity",
    "check_run",
    "output_conflicts",
    "shared_output_warnings",
    "undeclared_inputs",
    "unused_params",
    "warnings_of",
]

#: How many undeclared inputs a run lists by name (the rest are counted).
_LISTED = 100
#: How much later than the command's end an output may carry a modification time
#: (file times come from a coarse clock; later than this, someone else wrote it).
_MTIME_SLACK = 0.1


@dataclass
class FileActivity:
    """Files a run's Python processes opened under the project folder (absolute paths)."""

    watching: bool = False
    reads: set[str] = field(default_factory=set)
    #: path -> when a process of the run first opened it for writing
    writes: dict[str, float] = field(default_factory=dict)

    def note(self, event: Mapping[str, Any]) -> None:
        path, when = str(event["path"]), float(event["time"])
        if event["type"] == "read":
            self.reads.add(path)
        elif when < self.writes.get(path, when + 1):
            self.writes[path] = when


def unused_params(given: Iterable[str], read: Iterable[str]) -> list[str]:
    """Names given on the command line that the code never read."""
    seen = set(read)
    return sorted(name for name in given if name not in seen)


def _rel(path: str, cwd: Path) -> str:
    try:
        return Path(path).relative_to(cwd).as_posix()
    except ValueError:
        return path


def undeclared_inputs(
    activity: FileActivity,
    *,
    record: RunRecord,
    cwd: Path,
    store: BlobStore,
    declared: set[str],
    limit: int,
) -> tuple[list[FileRecord], list[dict[str, Any]]]:
    """Files the run read from its project that are neither code nor declared inputs.

    Returns the inputs to record (by digest, those up to ``limit`` bytes) and a
    note for each file found, kept or not.
    """
    root = Path(record.code.get("root") or cwd)
    snapshot = record.code.get("snapshot")
    candidates = sorted(p for p in activity.reads - declared if p not in activity.writes)
    if not candidates or not snapshot:
        return [], []
    code = {str(root / entry["path"]) for entry in read_manifest(store, snapshot)}
    code.update(str(root / name) for name in read_links(store, snapshot))
    records: list[FileRecord] = []
    notes: list[dict[str, Any]] = []
    budget = limit  # for all of them together, as for the code snapshot
    for path in candidates:
        if path in code:
            continue
        # Relative to the run's folder even when above it: the whole project is
        # re-created by reproduce, which then restores the file in its place.
        rel = Path(os.path.relpath(path, cwd)).as_posix()
        try:
            size = os.stat(path).st_size
        except OSError:
            notes.append({"path": rel, "kept": False, "reason": "no longer exists"})
            continue
        if not os.path.isfile(path):
            continue
        if size > budget:
            reason = (
                f"larger than {human_size(limit)}"
                if size > limit
                else f"the run's undeclared reads passed {human_size(limit)} in all"
            )
            notes.append({"path": rel, "kept": False, "size": size, "reason": reason})
            continue
        budget -= size
        digest = store.put_file(Path(path))
        records.append(FileRecord("input", rel, digest, size))
        notes.append({"path": rel, "kept": True, "size": size, "digest": digest})
    return records, notes


def _other_writes(run_dir: Path, paths: set[str]) -> Iterable[tuple[str, float]]:
    for event in read_events(run_dir):
        if event["type"] in ("write", "output") and event.get("path") in paths:
            yield str(event["path"]), float(event["time"])


def output_conflicts(
    outputs: Mapping[str, float],
    activity: FileActivity,
    *,
    record: RunRecord,
    cwd: Path,
    ledger: FolderLedger,
    command_ended: float,
    recorded_at: float,
) -> list[dict[str, str]]:
    """Outputs whose recorded content may not be this run's.

    ``outputs`` maps each recorded output (absolute path) to its modification
    time when it was stored. An output is flagged when another run of the same
    folder wrote it after this run started writing it (and before it was
    stored), when it was last modified before this run started or after its
    command ended, or when this run's watched processes never wrote it while
    another run of the folder was writing it too.
    """
    started = record.started_at
    # Runs that overlapped this one; a run whose recorder died without an end is
    # counted only while its process still exists.
    others = [
        r
        for r in ledger.runs().values()
        if r.run != record.id
        and r.start <= recorded_at
        and (r.end >= started if r.end is not None else r.alive())
    ]
    latest: dict[str, tuple[float, str]] = {}  # path -> the last other write that counts
    touched: dict[str, str] = {}  # path -> a run that wrote it (or declared it) meanwhile
    for other in others:
        for path in set(other.outputs) & set(outputs):
            touched.setdefault(path, other.run)
        for path, when in _other_writes(Path(other.dir), set(outputs)):
            if when >= started:
                touched.setdefault(path, other.run)
            ours = activity.writes.get(path, started)
            if ours <= when <= recorded_at and when > latest.get(path, (0.0, ""))[0]:
                latest[path] = (when, other.run)
    found = {
        path: f"run {run[:12]} in the same folder wrote it at {_clock(when)}, after this run "
        "started writing it; the recorded content may be that run's"
        for path, (when, run) in latest.items()
    }
    for path, mtime in outputs.items():
        if path in found:
            continue
        if mtime < started - 1:
            found[path] = f"last modified at {_clock(mtime)}, before this run started"
        elif mtime > command_ended + _MTIME_SLACK:
            found[path] = f"modified at {_clock(mtime)}, after this run's command ended"
        elif activity.watching and path not in activity.writes and path in touched:
            found[path] = (
                "no process of this run opened it for writing, while run "
                f"{touched[path][:12]} in the same folder was writing it"
            )
    return [{"path": _rel(p, cwd), "reason": r} for p, r in sorted(found.items())]


def check_run(
    record: RunRecord,
    files: dict[tuple[str, str], FileRecord],
    activity: FileActivity,
    *,
    params_read: Mapping[str, Any],
    cwd: Path,
    store: BlobStore,
    declared: set[str],
    ledger: FolderLedger | None,
    command_ended: float,
    input_limit: int,
    finished: bool,
) -> dict[str, Any]:
    """What the journal says beyond the declarations (see :mod:`conveyor.repro.checks`).

    Adds the undeclared inputs it keeps to ``files``; returns the findings.
    """
    checks: dict[str, Any] = {}
    given = record.environment.get("invocation", {}).get("params", {})
    # A command that failed may not have reached the code that reads its params.
    unused = unused_params(given, params_read) if finished else []
    if unused:
        checks["unused_params"] = unused
    produced = {str(cwd / f.path): f for (role, _), f in files.items() if role == "output"}
    kept, notes = undeclared_inputs(
        activity,
        record=record,
        cwd=cwd,
        store=store,
        declared=declared | set(produced),
        limit=input_limit,
    )
    for f in kept:
        files[("input", f.path)] = f
    if notes:
        checks["undeclared_inputs"] = notes[:_LISTED]
        if len(notes) > _LISTED:
            checks["undeclared_inputs_more"] = len(notes) - _LISTED
    if ledger is not None:
        mtimes = {}
        for path in produced:
            try:
                mtimes[path] = os.stat(path).st_mtime
            except OSError:
                continue
        conflicts = output_conflicts(
            mtimes,
            activity,
            record=record,
            cwd=cwd,
            ledger=ledger,
            command_ended=command_ended,
            recorded_at=time.time(),
        )
        if conflicts:
            checks["outputs"] = conflicts
        root = Path(record.code.get("root") or cwd)
        ledger.ended(
            record.id,
            time.time(),
            {_rel(p, root): (f.digest, f.size) for p, f in produced.items()},
        )
    return checks


def shared_output_warnings(ledger: FolderLedger, declared: list[str]) -> list[str]:
    """Say which runs still working in this folder declared one of our output paths."""
    if not declared:
        return []
    found = []
    for other in ledger.runs().values():
        shared = sorted(set(other.outputs) & set(declared))
        if shared and other.alive():
            names = ", ".join(_rel(p, ledger.root) for p in shared)
            found.append(
                f"run {other.run[:12]} (pid {other.pid}), still running in this folder, also "
                f"declares the output {names}; whichever writes last wins, and each run records "
                "what is there when it ends. Give each run its own output path (e.g. with a "
                "--param in the file name)."
            )
    return found


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def warnings_of(run: RunRecord) -> list[str]:
    """The run's findings as sentences a user can act on."""
    checks = run.environment.get("checks", {})
    lines = []
    for item in checks.get("outputs", []):
        lines.append(f"output {item['path']} may not be this run's: {item['reason']}")
    unused = checks.get("unused_params", [])
    if unused:
        import difflib  # only for the rare run that has something to say

        read = [k for k in run.params if k not in unused]
        for name in unused:
            close = difflib.get_close_matches(name, read, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(
                f"--param {name} was given but the code never read it with conveyor.param{hint}"
            )
    for item in checks.get("undeclared_inputs", []):
        if item.get("kept"):
            lines.append(
                f"read {item['path']}, which is neither code nor a declared input; "
                "kept by digest (declare it with --input)"
            )
        else:
            lines.append(
                f"read {item['path']}, which is neither code nor a declared input, and it "
                f"was not kept ({item['reason']}); declare it with --input"
            )
    more = checks.get("undeclared_inputs_more")
    if more:
        lines.append(f"... and {more} more files read without being declared")
    return lines
