"""Task steps on the platform: each step a one-off process launched through the target.

The process is ``python -m conveyor.tasks.step`` (:mod:`conveyor.tasks.step`),
which runs the step's command as a recorded Conveyor run in a working folder
of its own: the app's files, and the outputs of earlier steps it names as
``--input=@step/path``, restored by digest. A step whose app, parameters, input
digests and package set match a finished step's is not run again: its run is
reused and the execution says ``cached``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor._version import __version__
from conveyor.platform import Release, Target
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.catalogue import BUILTINS, TaskApp
from conveyor.tasks.errors import TaskError
from conveyor.tasks.execution import StepLaunch, StepResult
from conveyor.tasks.step import STEP_VARIABLE

__all__ = ["TargetLauncher"]

Materialise = Callable[[Mapping[str, Mapping[str, Any]], Path], None]


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


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
    ) -> None:
        self.target = target
        self.registry = registry
        self.artifacts = artifacts
        self.records = TaskRepository(registry)
        self.work_root = work_root
        self.apps = apps
        self.materialise = materialise

    def app(self, name: str) -> TaskApp:
        found = self.apps().get(name) or BUILTINS.get(name)
        if found is None:
            raise TaskError(f"the task app {name!r} is no longer registered")
        return found

    async def run_step(self, launch: StepLaunch) -> StepResult:
        execution, step = launch.execution, launch.step
        app = self.app(step.app)
        params = {**execution.params, **step.params}
        work = self.work_root / execution.id / f"{step.name}-{step.attempts}"
        await asyncio.to_thread(self._prepare, work, app)
        inputs = await asyncio.to_thread(self._inputs, work, params.pop("input", None), launch)
        outputs = _split(params.pop("output", None))
        key = self._cache_key(app, params, inputs)
        if app.cache and not launch.no_cache:
            hit = self.records.cached(key)
            if hit is not None:
                return StepResult(0, hit[1], run_id=hit[0], cached=True, reason="cached")
        spec = {
            "app": app.name,
            "sort": app.sort,
            "command": app.command,
            "uri": app.uri,
            "params": params,
            "inputs": sorted(inputs),
            "outputs": outputs,
            "name": f"{execution.task}/{step.name}",
            # The task execution, for the step run's OpenLineage parent facet.
            "execution": execution.id,
            "task": execution.task,
            "result": str(work / ".conveyor-step.json"),
        }
        env = {STEP_VARIABLE: json.dumps(spec), **self._droplet_env(app)}
        release = Release(
            app=f"task-{execution.task}",
            revision=execution.attempts,
            command=(sys.executable, "-m", "conveyor.tasks.step"),
            env=env,
            cwd=work,
            # A step records its run into the registry and the artifact store, which an
            # isolated process cannot reach; steps run as the platform's user (README).
            isolated=False,
        )
        try:
            done = await asyncio.wait_for(self.target.launch(release), app.timeout)
        except TimeoutError:
            return StepResult(-1, "FAILED", reason=f"timed out after {app.timeout:g} s (killed)")
        result = self._result(work)
        if result is None:
            reason = f"its process ended with {done.exit_code} before recording a run"
            return StepResult(done.exit_code or -1, None, reason=reason)
        code, status, run_id = int(result["exit_code"]), result.get("status"), result["run_id"]
        if code == 0 and run_id and app.cache:
            self.records.remember(key, run_id, status)
        return StepResult(code, status, run_id=run_id, reason=result.get("reason"))

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

    @staticmethod
    def _result(work: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((work / ".conveyor-step.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- caching --------------------------------------------------------------------

    @staticmethod
    def _droplet_env(app: TaskApp) -> dict[str, str]:
        if not app.droplet:
            return {}
        venv = Path(str(app.droplet["venv"]))
        return {
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    @staticmethod
    def _cache_key(app: TaskApp, params: Mapping[str, str], inputs: Mapping[str, str]) -> str:
        """A digest of all a step's result depends on: code, command, params, inputs, packages."""
        described = app.to_json()
        described.pop("droplet", None)
        described.pop("timeout", None)
        packages = app.droplet.get("lock_digest") if app.droplet else None
        blob = json.dumps(
            {
                "app": described,
                "params": dict(sorted(params.items())),
                "inputs": dict(sorted(inputs.items())),
                "packages": packages,
                "platform": [__version__, sys.version],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()
