"""A run recorded for a process that runs elsewhere: a task step's Job on a cluster.

Nothing of this machine reaches the process (its pod shares no folder with
the platform, has no journal to write to and no registry to reach), so the
run is recorded entirely from outside: when the Job is made, a RUNNING row
with the step's command, parameters, seed and the code snapshot of its task
app's registered files; the environment is where it ran — the image by its
digest, the cluster's target, namespace, Job and pods — not this host's
facts; when the Job ends, the exit status and the pods' log lines as the
run's stdout::

    recording = RemoteRecording.begin(request, settings, store, registry,
                                      code=code, host="prod/ds-team", environment={...})
    ...                                           # the Job runs to its end
    record = recording.finish(exit_code, lines, environment={"pods": [...]})

Files the process reads or writes are not recorded (it reports none), so such
a run has no inputs or outputs of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.repro.finish import run_status
from conveyor.repro.openlineage import Emitter
from conveyor.repro.recorder import RunRequest, describe_invocation, new_run
from conveyor.repro.run_events import emit_run_end, emit_run_start
from conveyor.repro.snapshot import CodeState
from conveyor.store.blobs import BlobStore
from conveyor.store.records import RunRecord

__all__ = ["RemoteRecording", "remote_facts"]


@dataclass
class RemoteRecording:
    """One remote process's run, from its RUNNING row to its finished record."""

    request: RunRequest
    record: RunRecord
    run_dir: Path
    store: BlobStore
    registry: Any
    lineage: Emitter

    @classmethod
    def begin(
        cls,
        request: RunRequest,
        settings: Settings,
        store: BlobStore,
        registry: Any,
        *,
        code: CodeState,
        host: str,
        environment: Mapping[str, Any],
    ) -> RemoteRecording:
        """Describe the run and write its RUNNING row; ``environment`` says where it runs."""
        record, run_dir = new_run(
            settings,
            store,
            cwd=request.cwd,
            command=list(request.command),
            name=request.name or request.command[0],
            seed=request.seed,
            threads={},
            code=code,
            experiment=request.experiment,
        )
        # This machine's host facts and pid describe the recorder, not the process.
        record.host, record.pid = host[:255], None
        record.environment = {"remote": True, **environment}
        describe_invocation(record, request, [], dict(request.env))
        registry.create_run(record)
        lineage = Emitter.from_settings(settings)
        emit_run_start(lineage, record, [], request.cwd, request.parent)
        return cls(request, record, run_dir, store, registry, lineage)

    def finish(
        self,
        returncode: int,
        output: Sequence[str],
        *,
        error: str | None = None,
        interrupted: bool = False,
        environment: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Complete the run: its status, ``output`` as its stdout, and what was learnt of
        where it ran (``environment``, merged into the one given at the start)."""
        status, default_error = run_status(returncode, interrupted)
        log = self.run_dir / "stdout.log"
        log.write_text("".join(f"{line}\n" for line in output), errors="replace")
        stdout = self.store.put_file(log)
        ended = time.time()
        env = {**self.record.environment, **(environment or {})}
        error = (error or default_error) if returncode != 0 or interrupted else None
        self.registry.complete_run(
            self.record.id,
            status,
            ended_at=ended,
            exit_code=returncode,
            error=error,
            environment=env,
            params={},
            metric_records=(),
            files=(),
            models=(),
            stdout_digest=stdout,
            stderr_digest=None,
        )
        record = self.record
        record.status, record.ended_at, record.exit_code, record.error = (
            status,
            ended,
            returncode,
            error,
        )
        record.environment, record.stdout_digest = env, stdout
        emit_run_end(self.lineage, record, self.request.cwd, self.request.parent)
        return record


#: What ``runs show`` says of a local run's interpreter; a remote run's image stands for it.
_INTERPRETER_FACTS = frozenset({"python", "packages", "threads", "blas"})


def remote_facts(
    environment: Mapping[str, Any], facts: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``facts`` about a run's environment as ``runs show`` and the dashboard list them; for
    a run recorded from outside, where it ran (image, Job, pods) instead of the interpreter
    this machine knows nothing of."""
    if not environment.get("remote"):
        return list(facts)
    kept = [(key, value) for key, value in facts if key not in _INTERPRETER_FACTS]
    if environment.get("image"):
        kept.append(("image", str(environment["image"])))
    where = environment.get("kubernetes") or {}
    if where:
        pods = ", ".join(where.get("pods") or ()) or "-"
        kept.append(
            (
                "job",
                f"{where.get('job')} on {where.get('target')} "
                f"(namespace {where.get('namespace')})  pods {pods}",
            )
        )
    return kept
