"""Re-create a run and verify it: same code, inputs, packages, seed and thread settings.

    result = reproduce("3f2a9c", settings)
    result.identical          # every output has the original's digest
    result.outputs            # per output: identical / different (and where) / missing

The reproduction is itself a run whose ``reproduces`` field names the original.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conveyor.config import Settings
from conveyor.errors import RunError, UsageError
from conveyor.repro.compare import OutputComparison, compare_outputs
from conveyor.repro.envs import conveyor_path_entry, ensure_environment
from conveyor.repro.recorder import RunRequest, execute
from conveyor.repro.snapshot import inside, materialize
from conveyor.store.artifacts import ArtifactStore, digest_file
from conveyor.store.blobs import BlobStore
from conveyor.store.files import private_dir
from conveyor.store.records import RunRecord
from conveyor.store.registry import Registry

__all__ = ["ReproduceResult", "reproduce"]


@dataclass
class ReproduceResult:
    original: RunRecord
    run: RunRecord
    outputs: list[OutputComparison]
    workdir: Path

    @property
    def identical(self) -> bool:
        return all(o.status == "identical" for o in self.outputs)


def _restore_inputs(run: RunRecord, store: BlobStore, cwd: Path, workdir: Path) -> None:
    """Put each recorded input back; an input inside the project stays inside ``workdir``."""
    for record in run.inputs():
        rel = PurePosixPath(record.path)
        if rel.is_absolute():
            target = Path(record.path)
            if target.exists():
                if digest_file(target) != record.digest:
                    raise RunError(
                        f"input {target} is outside the project and has changed since run "
                        f"{run.id[:12]} read it",
                        hint=f"Restore it with: conveyor artifacts get {record.digest} -o {target}",
                    )
                continue
        else:
            target = cwd.joinpath(*rel.parts)
            # A recorded path is data: "../" or a symlink in the re-created tree must not
            # carry a write out of the reproduction's folder.
            if not inside(target, workdir):
                raise RunError(
                    f"run {run.id[:12]} records the input {record.path!r}, which would be "
                    f"restored outside the reproduction's folder {workdir}; refusing to write it",
                    hint="Recorded input paths are relative to the run's folder; this record "
                    "was altered or damaged. Check it with: conveyor runs show " + run.id[:12],
                )
        store.export(record.digest, target)


def _missing_undeclared(run: RunRecord, cwd: Path) -> list[str]:
    """Files the run read without declaring them, were not kept, and are not here now."""
    notes = run.environment.get("checks", {}).get("undeclared_inputs", [])
    return [
        item["path"] for item in notes if not item.get("kept") and not (cwd / item["path"]).exists()
    ]


def _command_for(run: RunRecord, venv: Path | None) -> list[str]:
    command = list(run.command)
    if venv is not None and command:
        first = command[0]
        is_python = first == run.environment.get("executable") or Path(first).name.startswith(
            "python"
        )
        if is_python and "/" in first:  # a bare "python" is found on the environment's PATH
            command[0] = str(venv / "bin" / "python")
    return command


def _refuse_remote(run: RunRecord) -> None:
    """A step run recorded from a cluster's Job ran in an image there, not on this machine:
    re-running its command here would reproduce nothing of it."""
    if not run.environment.get("remote"):
        return
    where = run.environment.get("kubernetes") or {}
    target = where.get("target") or "its target"
    task = run.experiment or "TASK"
    raise RunError(
        f"run {run.id[:12]} ran in image {run.environment.get('image') or '?'} on target "
        f"{target} (Job {where.get('job') or '?'}), not on this machine; re-run it there "
        f"with `conveyor task launch {task} --target {target}`"
    )


def reproduce(
    run_id: str,
    settings: Settings,
    *,
    workdir: Path | None = None,
    rebuild_env: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
) -> ReproduceResult:
    """Re-run ``run_id`` from its recorded inputs and compare every output."""
    store = ArtifactStore.from_settings(settings)
    with Registry.from_settings(settings) as registry:
        original = registry.get_run(run_id)
    if not original.status.final:
        raise RunError(f"run {original.id[:12]} is still RUNNING; reproduce it once it ends")
    _refuse_remote(original)
    snapshot = original.code.get("snapshot")
    if not snapshot:
        raise RunError(f"run {original.id[:12]} has no code snapshot to reproduce from")

    if workdir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        workdir = settings.home / "reproductions" / f"{original.id[:12]}-{stamp}"
        n = 1
        while workdir.exists():
            n += 1
            workdir = workdir.with_name(f"{original.id[:12]}-{stamp}-{n}")
    elif workdir.exists() and any(workdir.iterdir()):
        raise UsageError(f"--dir {workdir} is not empty; give a new or empty folder")
    private_dir(workdir)  # 0700 when made here: it re-creates the run's inputs

    count = materialize(store, snapshot, workdir)
    cwd = workdir.joinpath(*PurePosixPath(original.code.get("cwd", ".")).parts)
    cwd.mkdir(parents=True, exist_ok=True)
    progress(f"Code: {count} files of run {original.id[:12]} re-created in {workdir}")
    _restore_inputs(original, store, cwd, workdir)
    missing = _missing_undeclared(original, cwd)
    for path in missing:
        progress(
            f"warning: run {original.id[:12]} read {path}, which was neither code nor a "
            f"declared input and was not kept; copy it to {cwd / path} if the command needs it"
        )

    venv: Path | None = None
    packages_digest = original.environment.get("packages")
    if rebuild_env and packages_digest and original.environment.get("python_command", True):
        venv = ensure_environment(
            store.read_json(packages_digest),
            original.environment.get("python", ""),
            settings.env_cache,
            progress=progress,
        )

    invocation = original.environment.get("invocation", {})
    variables = dict(original.environment.get("variables", {}))
    variables.update(original.environment.get("threads", {}))
    request = RunRequest(
        command=_command_for(original, venv),
        cwd=cwd,
        params=dict(invocation.get("params", {})),
        outputs=list(invocation.get("outputs", [])),
        name=original.name,
        seed=original.seed,
        env=variables,
        path_prefix=[str(venv / "bin")] if venv is not None else [],
        python_path=[str(conveyor_path_entry(settings.env_cache))] if venv is not None else [],
        reproduces=original.id,
        experiment=original.experiment,
    )
    progress(f"Re-running: {' '.join(request.command)}")
    new = execute(request, settings)
    if missing and new.exit_code not in (0, None):
        progress(
            f"The reproduction failed; it may be for want of {', '.join(missing)}, which "
            f"run {original.id[:12]} read but did not keep (declare such files with --input)."
        )
    return ReproduceResult(original, new, compare_outputs(original, new, store), workdir)
