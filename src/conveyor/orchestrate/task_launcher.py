"""Task steps on the platform: each step a recorded run whose command runs sandboxed.

The platform records the run itself (:class:`~conveyor.repro.recording.StepRecording`:
the code snapshot from the app's registered files, parameters, seed, packages,
inputs and outputs by digest) and launches only the step's command through
the target, isolated like any app: it sees its working folder — the app's
files and the outputs of earlier steps it names as ``--input=@step/path``,
restored by digest — its run's folder (journal, logs) and its app's droplet,
and nothing of the registry, the artifact store or other apps. A step whose
app, parameters, input digests and package set match a finished step's is not
run again: its run is reused and the execution says ``cached``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor._version import __version__
from conveyor.config import Settings
from conveyor.platform import MINIMAL_PATH, Release, SpawnError, Target, app_uid
from conveyor.repro.recorder import RunRequest
from conveyor.repro.recording import StepRecording
from conveyor.repro.snapshot import snapshot_of_files
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from conveyor.store.sealing import mask_sealed, unseal_values
from conveyor.store.secrets import SecretBox
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.catalogue import BUILTINS, TaskApp
from conveyor.tasks.errors import TaskError
from conveyor.tasks.execution import StepLaunch, StepResult
from conveyor.tasks.step import STATUS_FILE, STATUS_VARIABLE, step_command

__all__ = ["TargetLauncher", "step_cache_key", "task_app"]

Materialise = Callable[[Mapping[str, Mapping[str, Any]], Path], None]


def _hand_over(paths: list[Path], uid: int) -> None:
    for top in paths:
        os.chown(top, uid, uid)
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                os.chown(Path(folder, name), uid, uid, follow_symlinks=False)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def task_app(apps: Mapping[str, TaskApp], name: str) -> TaskApp:
    """A registered or built-in task app; TaskError when it is gone."""
    found = apps.get(name) or BUILTINS.get(name)
    if found is None:
        raise TaskError(f"the task app {name!r} is no longer registered")
    return found


def step_cache_key(
    app: TaskApp,
    params: Mapping[str, str],
    inputs: Mapping[str, str],
    *,
    image: str | None = None,
) -> str:
    """A digest of all a step's result depends on: code, command, params, inputs, packages
    (and, on a cluster, the image it runs in, pinned by its digest)."""
    described = app.to_json()
    described.pop("droplet", None)
    described.pop("timeout", None)
    packages = app.droplet.get("lock_digest") if app.droplet else None
    facts: dict[str, Any] = {
        "app": described,
        "params": dict(sorted(params.items())),
        "inputs": dict(sorted(inputs.items())),
        "packages": packages,
        "platform": [__version__, sys.version],
    }
    if image is not None:
        facts["image"] = image
    blob = json.dumps(facts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class TargetLauncher:
    """Runs steps through ``target.launch``; the executor's :class:`StepLauncher`."""

    def __init__(
        self,
        target: Target,
        registry: Registry,
        artifacts: BlobStore,
        work_root: Path,
        apps: Callable[[], Mapping[str, TaskApp]],
        materialise: Materialise,
        settings: Settings | None = None,
        *,
        secrets: SecretBox | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        #: Unseals the secrets of a step's parameters (a sql step's URL) as the step starts.
        self.secrets = secrets
        self.target = target
        self.registry = registry
        self.artifacts = artifacts
        self.records = TaskRepository(registry)
        self.work_root = work_root
        self.apps = apps
        self.materialise = materialise

    def app(self, name: str) -> TaskApp:
        return task_app(self.apps(), name)

    async def run_step(self, launch: StepLaunch) -> StepResult:
        execution, step = launch.execution, launch.step
        app = self.app(step.app)
        params = {**execution.params, **step.params}
        work = self.work_root / execution.id / f"{step.name}-{step.attempts}"
        await asyncio.to_thread(self._prepare, work, app)
        inputs = await asyncio.to_thread(self._inputs, work, params.pop("input", None), launch)
        outputs = _split(params.pop("output", None))
        key = step_cache_key(app, params, inputs)
        if app.cache and not launch.no_cache:
            hit = self.records.cached(key)
            if hit is not None:
                return StepResult(0, hit[1], run_id=hit[0], cached=True, reason="cached")
        run = RunRequest(
            command=step_command(
                {"app": app.name, "sort": app.sort, "command": app.command, "uri": app.uri}, params
            ),
            cwd=work,
            # Recorded with the run, shown by `runs show`: sealed secrets masked.
            params=mask_sealed({k: str(v) for k, v in params.items() if k != "command"}),
            outputs=outputs,
            name=f"{execution.task}/{step.name}",
            env={STATUS_VARIABLE: str(work / STATUS_FILE)},
            # The task execution, for the step run's OpenLineage parent facet.
            parent={"run": execution.id, "job": execution.task},
            experiment=execution.task,
        )
        release_app = f"task-{execution.task}"
        recording = await asyncio.to_thread(self._begin, run, app, inputs, release_app)
        release = Release(
            app=release_app,
            revision=execution.attempts,
            command=recording.command(),
            env={**recording.env, **self._droplet_env(app), **self._clear_params(params)},
            cwd=work,
            # The recorder is this process; the step's command sees its own folders only.
            read_only=self._droplet_paths(app),
            read_write=(work, recording.run_dir),
        )
        try:
            done = await asyncio.wait_for(self.target.launch(release), app.timeout)
        except TimeoutError:
            record = await asyncio.to_thread(recording.finish, -signal.SIGKILL)
            reason = f"timed out after {app.timeout:g} s (killed)"
            return StepResult(-1, "FAILED", run_id=record.id, reason=reason)
        except asyncio.CancelledError:
            recording.finish(-signal.SIGTERM, interrupted=True)
            raise
        except SpawnError as error:
            record = await asyncio.to_thread(recording.finish, 127)
            return StepResult(127, None, run_id=record.id, reason=str(error))
        record = await asyncio.to_thread(recording.finish, done.exit_code)
        code = record.exit_code if record.exit_code is not None else 1
        status_file = work / STATUS_FILE
        chosen = (status_file.read_text().strip() if status_file.is_file() else "") or None
        if code == 0 and app.cache:
            self.records.remember(key, record.id, chosen)
        failure = None if code == 0 else (record.error or None)
        return StepResult(code, chosen, run_id=record.id, reason=failure)

    def _clear_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """``CONVEYOR_PARAMS`` with sealed secrets in clear, if any: what the step reads."""
        given = {k: str(v) for k, v in params.items() if k != "command"}
        clear = unseal_values(self.secrets, given)
        return {} if clear == given else {"CONVEYOR_PARAMS": json.dumps(clear)}

    def _begin(
        self, run: RunRequest, app: TaskApp, inputs: Mapping[str, str], release_app: str
    ) -> StepRecording:
        recording = StepRecording.begin(
            run,
            self.settings,
            self.artifacts,
            self.registry,
            code=snapshot_of_files(app.files or {}, run.cwd, self.artifacts),
            input_digests=inputs,
        )
        if os.geteuid() == 0:
            # An isolated step runs as the app's own uid: its folders become its own.
            _hand_over([run.cwd, recording.run_dir], app_uid(release_app))
        return recording

    # -- the working folder ---------------------------------------------------------

    def _prepare(self, work: Path, app: TaskApp) -> None:
        if work.exists():
            shutil.rmtree(work)
        work.parent.mkdir(parents=True, exist_ok=True)
        if app.files:
            self.materialise(app.files, work)
        work.mkdir(parents=True, exist_ok=True)

    def _inputs(self, work: Path, value: str | None, launch: StepLaunch) -> dict[str, str]:
        """Restore ``@step/path`` inputs into ``work``; every input's path -> its digest."""
        found: dict[str, str] = {}
        for item in _split(value):
            if item.startswith("@"):
                step_name, _, path = item[1:].partition("/")
                digest = self._output_of(launch, step_name, path)
                dest = work / path
                self.artifacts.export(digest, dest)
                found[path] = digest
            else:
                source = work / item
                if not source.is_file():
                    raise TaskError(f"step {launch.step.name!r}: the input {item} does not exist")
                found[item] = self.artifacts.put_file(source)
        return found

    def _output_of(self, launch: StepLaunch, step_name: str, path: str) -> str:
        earlier = launch.execution.steps.get(step_name)
        if earlier is None or earlier.run_id is None:
            raise TaskError(
                f"step {launch.step.name!r} reads @{step_name}/{path}, but step {step_name!r} "
                "has no recorded run in this execution; expected a step that ran before it"
            )
        run = self.registry.get_run(earlier.run_id)
        for record in run.outputs():
            if record.path == path:
                return record.digest
        outputs = ", ".join(sorted(r.path for r in run.outputs())) or "none"
        raise TaskError(
            f"step {launch.step.name!r} reads @{step_name}/{path}, but that step's run "
            f"recorded no output {path!r}; its outputs: {outputs} (declare it with --output)"
        )

    # -- caching --------------------------------------------------------------------

    @staticmethod
    def _droplet_paths(app: TaskApp) -> tuple[Path, ...]:
        """What a sandboxed step reads besides its folder: its app's environment."""
        if not app.droplet:
            return ()
        return tuple(Path(str(app.droplet[k])) for k in ("venv", "source") if app.droplet.get(k))

    @staticmethod
    def _droplet_env(app: TaskApp) -> dict[str, str]:
        """The step's interpreter first on PATH: its droplet's, else the platform's own."""
        if app.droplet:
            venv = Path(str(app.droplet["venv"]))
            bin_dir = venv / "bin"
        else:  # an app without requirements runs on the platform's packages, as before
            venv, bin_dir = Path(sys.prefix), Path(sys.executable).parent
        return {"VIRTUAL_ENV": str(venv), "PATH": f"{bin_dir}{os.pathsep}{MINIMAL_PATH}"}
