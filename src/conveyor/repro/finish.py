"""The end of a recorded run: read its journal, store what it made, complete its row.

Shared by ``conveyor run`` (:mod:`.recorder`), runs the Python API starts by
itself (:mod:`.local`) and task steps the platform records (:mod:`.recording`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.repro import environment
from conveyor.repro.checks import FileActivity, check_run
from conveyor.repro.journal import read_events
from conveyor.repro.ledger import FolderLedger
from conveyor.repro.metric_feed import MetricFeed
from conveyor.repro.metric_journal import METRICS_NAME
from conveyor.store.blobs import BlobStore
from conveyor.store.records import FileRecord, ModelRecord, RunRecord, RunStatus

if TYPE_CHECKING:
    from conveyor.repro.recorder import RunRequest

__all__ = ["capture_interpreter", "finish_recorded_run", "relative", "run_status"]


def relative(path: Path, cwd: Path) -> str:
    try:
        return path.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def capture_interpreter(event: Mapping[str, Any], store: BlobStore) -> dict[str, Any]:
    """Environment facts from the journal's ``interpreter`` event, package list stored."""
    digest, count = environment.stored_packages(event["path"], store)
    return {
        "executable": event["executable"],
        "python": event["python"],
        "implementation": event["implementation"],
        "packages": digest,
        "package_count": count,
        "_path": list(event["path"]),
    }


def run_status(returncode: int, interrupted: bool) -> tuple[RunStatus, str | None]:
    if returncode == 0:
        return RunStatus.FINISHED, None
    if returncode < 0:
        sig = signal.Signals(-returncode)
        if sig is signal.SIGINT or interrupted:
            return RunStatus.INTERRUPTED, f"interrupted by {sig.name}"
        return RunStatus.KILLED, f"killed by {sig.name}"
    if interrupted:
        return RunStatus.INTERRUPTED, f"interrupted (exit status {returncode})"
    return RunStatus.FAILED, f"exit status {returncode}"


def _stored(path: Path, store: BlobStore, problems: list[str]) -> str | None:
    """An input a sandboxed command declared (it cannot reach the store): stored now."""
    try:
        return store.put_file(path)
    except OSError:
        problems.append(f"declared input {path} was gone when the run ended")
        return None


def finish_recorded_run(
    record: RunRecord,
    *,
    returncode: int,
    interrupted: bool,
    run_dir: Path,
    store: BlobStore,
    registry: Any,
    inputs: list[FileRecord],
    request: RunRequest,
    cwd: Path,
    interpreter: dict[str, Any] | None = None,
    ledger: FolderLedger | None = None,
    command_ended: float | None = None,
    input_limit: int = 0,
    metrics: MetricFeed | None = None,
) -> RunRecord:
    """Read the run's journal, store its outputs and logs, and complete its registry row.

    With a ``ledger`` the outputs are checked against the other runs of the
    folder and noted for the next snapshots; files the command read from the
    project without declaring them are kept up to ``input_limit`` bytes each.
    Metrics go through ``metrics`` (the feed that wrote them while the command
    ran), in bounded batches, never all in memory.
    """
    ended = time.time()
    command_ended = ended if command_ended is None else command_ended
    status, error = run_status(returncode, interrupted)
    problems: list[str] = []
    params: dict[str, Any] = {}
    feed = metrics or MetricFeed(registry, record.id, run_dir / METRICS_NAME)
    feed.pump()
    files: dict[tuple[str, str], FileRecord] = {(f.role, f.path): f for f in inputs}
    models: list[ModelRecord] = []
    outputs: list[str] = list(request.outputs)
    env = record.environment
    activity = FileActivity()
    declared: set[str] = {str(cwd / f.path) for f in inputs}

    for event in read_events(run_dir):
        kind = event["type"]
        if kind in ("read", "write"):
            activity.note(event)
        elif kind == "param":
            params[event["key"]] = event["value"]
        elif kind == "input":
            rel = relative(Path(event["path"]), cwd)
            digest = event.get("digest") or _stored(Path(event["path"]), store, problems)
            if digest is not None:
                files[("input", rel)] = FileRecord("input", rel, digest, event["size"])
            declared.add(str(event["path"]))
        elif kind == "output":
            outputs.append(event["path"])
        elif kind == "model":
            path = Path(event["path"])
            if path.is_file():
                digest = store.put_file(path)
                rel = relative(path, cwd)
                # Types recorded when save_model wrote the file hold for that file only:
                # one rewritten since then by other code is trusted no further than any.
                same = event.get("digest") == digest
                models.append(
                    ModelRecord(
                        record.id,
                        event["name"],
                        rel,
                        event["format"],
                        digest,
                        event.get("signature"),
                        tuple(event.get("trusted_types") or ()) if same else (),
                    )
                )
                files[("output", rel)] = FileRecord("output", rel, digest, path.stat().st_size)
            else:
                problems.append(f"model {event['name']} at {path} was not written")
        elif kind == "interpreter":
            activity.watching = activity.watching or bool(event.get("watching"))
            if interpreter is None or interpreter["_path"] != list(event["path"]):
                interpreter = capture_interpreter(event, store)
            env.update({k: v for k, v in interpreter.items() if not k.startswith("_")})
        elif kind == "blas":
            env["blas"] = event["libraries"]

    if "packages" not in env:
        # The command was not Python (or never started one): record our own interpreter.
        facts = environment.interpreter_facts()
        digest, count = environment.stored_packages(facts["path"], store)
        env.update(
            executable=facts["executable"],
            python=facts["python"],
            implementation=facts["implementation"],
            packages=digest,
            package_count=count,
            python_command=False,
        )

    for name in outputs:
        path = Path(name) if Path(name).is_absolute() else cwd / name
        rel = relative(path, cwd)
        if path.is_file():
            files[("output", rel)] = FileRecord(
                "output", rel, store.put_file(path), path.stat().st_size
            )
        elif ("output", rel) not in files:
            problems.append(f"declared output {rel} was not written")

    checks = check_run(
        record,
        files,
        activity,
        params_read=params,
        cwd=cwd,
        store=store,
        declared=declared,
        ledger=ledger,
        command_ended=command_ended,
        input_limit=input_limit,
        finished=status is RunStatus.FINISHED,
    )
    if checks:
        env["checks"] = checks

    logs = {}
    for stream in ("stdout", "stderr"):
        log = run_dir / f"{stream}.log"
        logs[stream] = store.put_file(log) if log.exists() else None

    if problems and status is RunStatus.FINISHED:
        error = "; ".join(problems)
    elif problems:
        error = "; ".join([error or "", *problems]).strip("; ")

    registry.complete_run(
        record.id,
        status,
        ended_at=ended,
        exit_code=returncode,
        error=error,
        environment=env,
        params=params,
        metric_records=(),
        files=files.values(),
        models=models,
        stdout_digest=logs["stdout"],
        stderr_digest=logs["stderr"],
    )
    record.status, record.ended_at, record.exit_code, record.error = (
        status,
        ended,
        returncode,
        error,
    )
    record.stdout_digest, record.stderr_digest = logs["stdout"], logs["stderr"]
    record.params = {**record.params, **params}
    record.metrics = [s.latest() for s in registry.metric_summaries(record.id)]
    record.files, record.models = list(files.values()), models
    return record
