"""The OpenLineage events of a recorded run: START when it begins, COMPLETE/FAIL/ABORT at its end.

A run's job is its name in the ``conveyor`` namespace; its inputs and
outputs are the files it recorded, each a dataset versioned by its content
digest; its code (commit, uncommitted changes, snapshot digest) and seed go
in Conveyor's own facets. A task step's run names its task execution as its
parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conveyor.repro.openlineage import Emitter, facet, file_dataset, run_event, run_uuid
from conveyor.store.records import FileRecord, RunRecord, RunStatus

__all__ = ["emit_run_end", "emit_run_start"]

_END = {
    RunStatus.FINISHED: "COMPLETE",
    RunStatus.FAILED: "FAIL",
    RunStatus.KILLED: "ABORT",
    RunStatus.INTERRUPTED: "ABORT",
}


def _datasets(files: Iterable[FileRecord], role: str, cwd: Path) -> list[dict[str, Any]]:
    return [file_dataset(cwd / f.path, f.digest) for f in files if f.role == role]


def _facets(record: RunRecord, parent: Mapping[str, str] | None) -> dict[str, Any]:
    code = record.code
    run_facets: dict[str, Any] = {
        "conveyor_run": facet(
            "conveyor_run",
            runId=record.id,
            seed=record.seed,
            host=record.host,
            command=list(record.command),
            commit=code.get("commit"),
            dirty=bool(code.get("dirty")),
            snapshot=code.get("snapshot"),
        )
    }
    if parent:
        run_facets["parent"] = facet(
            "parent",
            run={"runId": run_uuid(parent["run"])},
            job={"namespace": "conveyor", "name": parent["job"]},
        )
    return run_facets


def emit_run_start(
    emitter: Emitter,
    record: RunRecord,
    inputs: Iterable[FileRecord],
    cwd: Path,
    parent: Mapping[str, str] | None = None,
) -> None:
    if not emitter.enabled:
        return
    emitter.emit(
        run_event(
            "START",
            run_uuid(record.id),
            record.name,
            inputs=_datasets(inputs, "input", cwd),
            run_facets=_facets(record, parent),
        )
    )


def emit_run_end(
    emitter: Emitter, record: RunRecord, cwd: Path, parent: Mapping[str, str] | None = None
) -> None:
    if not emitter.enabled:
        return
    run_facets = _facets(record, parent)
    state = _END.get(record.status, "COMPLETE")
    if state != "COMPLETE":
        message = record.error or f"exited with {record.exit_code}"
        run_facets["errorMessage"] = facet(
            "errorMessage", message=message, programmingLanguage="PYTHON"
        )
    emitter.emit(
        run_event(
            state,
            run_uuid(record.id),
            record.name,
            inputs=_datasets(record.files, "input", cwd),
            outputs=_datasets(record.files, "output", cwd),
            run_facets=run_facets,
        )
    )
    emitter.close()
