"""A run recorded around a process that someone else starts: a composed task's step.

``conveyor run`` starts its command itself (:mod:`.recorder`). The platform
starts a step through its target, in a sandbox that hides the registry and the
artifact store, and records the run from outside: the step's process sees its
working folder and its run folder (journal, logs) and nothing else of the
platform's. What all steps share is worked out once per platform process — the
host, each interpreter's package set (until a folder on its path changes) — and
the code snapshot is made from the task app's registered files, already stored
by digest, so recording a step costs a few small registry writes::

    recording = StepRecording.begin(request, settings, store, registry, code=code)
    argv = recording.command()                # the command, its output into the run's logs
    ...                                       # the target runs argv with recording.env
    record = recording.finish(returncode)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.repro import environment
from conveyor.repro.finish import finish_recorded_run
from conveyor.repro.ledger import FolderLedger
from conveyor.repro.openlineage import Emitter
from conveyor.repro.recorder import (
    RunRequest,
    child_env,
    describe_invocation,
    new_run,
)
from conveyor.repro.run_events import emit_run_end, emit_run_start
from conveyor.repro.snapshot import CodeState
from conveyor.store.blobs import BlobStore
from conveyor.store.records import FileRecord, RunRecord

__all__ = ["StepRecording"]

#: Runs the command with its output appended to the run's logs ($0 is the run's folder).
_TO_LOGS = 'exec "$@" >>"$0/stdout.log" 2>>"$0/stderr.log"'


@dataclass
class StepRecording:
    """One step's run from its RUNNING row to its finished record."""

    request: RunRequest
    record: RunRecord
    run_dir: Path
    #: The variables the command needs to be recorded (bootstrap, run id, params, seed).
    env: dict[str, str]
    inputs: list[FileRecord]
    settings: Settings
    store: BlobStore
    registry: Any
    ledger: FolderLedger
    #: Where the run's OpenLineage events go (nowhere unless configured).
    lineage: Emitter

    @classmethod
    def begin(
        cls,
        request: RunRequest,
        settings: Settings,
        store: BlobStore,
        registry: Any,
        *,
        code: CodeState | None,
        input_digests: Mapping[str, str],
    ) -> StepRecording:
        """Describe the run, write its RUNNING row; ``input_digests``: path -> stored digest."""
        cwd = request.cwd.resolve()
        inputs = [
            FileRecord("input", path, digest, (cwd / path).stat().st_size)
            for path, digest in sorted(input_digests.items())
        ]
        record, run_dir = new_run(
            settings,
            store,
            cwd=cwd,
            command=list(request.command),
            name=request.name or request.command[0],
            seed=request.seed,
            threads=environment.pinned_thread_env(os.environ, request.threads),
            code=code,
            experiment=request.experiment,
        )
        env = child_env(request, record, run_dir, settings, base={})
        describe_invocation(record, request, inputs, env)
        ledger = FolderLedger(settings.home, cwd)
        outputs = [str(cwd / p) for p in request.outputs]
        pid = os.getpid()
        ledger.started(record.id, record.started_at, pid=pid, run_dir=run_dir, outputs=outputs)
        registry.create_run(record)
        lineage = Emitter.from_settings(settings)
        emit_run_start(lineage, record, inputs, cwd, request.parent)
        return cls(
            request, record, run_dir, env, inputs, settings, store, registry, ledger, lineage
        )

    def command(self) -> tuple[str, ...]:
        """The step's command, its stdout and stderr going to the run's log files."""
        return ("/bin/sh", "-c", _TO_LOGS, str(self.run_dir), *self.request.command)

    def finish(self, returncode: int, *, interrupted: bool = False) -> RunRecord:
        """Read the journal, store outputs and logs, and complete the run's row."""
        cwd = self.request.cwd.resolve()
        finished = finish_recorded_run(
            self.record,
            returncode=returncode,
            interrupted=interrupted,
            run_dir=self.run_dir,
            store=self.store,
            registry=self.registry,
            inputs=self.inputs,
            request=self.request,
            cwd=cwd,
            ledger=self.ledger,
            command_ended=time.time(),
            input_limit=self.settings.snapshot_limit,
        )
        emit_run_end(self.lineage, finished, cwd, self.request.parent)
        return finished
