"""Task steps on a Kubernetes target: the control flow stays here, each step is a Job.

The executor walks the definition in the Conveyor server as it does locally
and writes the same state records (step states, exit codes, reasons); only
:meth:`ClusterLauncher.run_step` differs: it builds the step's image from the
task app's files as a push would (its droplet, or the files alone), or takes
the image given at launch, and runs the step's command as a Job to its end.
The exit code is the step's container's, as the Job's pod reports it.

Nothing of this machine reaches a pod: steps share no folder (``--input`` /
``--output`` between steps are refused; read and write through the artifact
root). Each step is recorded here as a run (:class:`~conveyor.repro.remote.RemoteRecording`:
its parameters, the code snapshot of its task app's files, the image by digest,
the Job and its pods, exit status, the pods' log lines), and a step whose cache
key — the local one plus the image's digest — matches a succeeded step's is not
run again: no Job is made, the execution says ``cached``. What is reused is the
success and the run's record; a step's files stay where it wrote them (the
artifact root), as the cluster keeps no outputs for Conveyor to restore.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.errors import ConveyorError
from conveyor.orchestrate.task_launcher import step_cache_key, task_app
from conveyor.platform import AppSpec, KubernetesTarget, LaunchResult, job_name
from conveyor.repro.recorder import RunRequest
from conveyor.repro.remote import RemoteRecording
from conveyor.repro.snapshot import snapshot_of_files
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from conveyor.store.sealing import mask_sealed, unseal_values
from conveyor.store.secrets import SecretBox
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.catalogue import BUILTINS, TaskApp
from conveyor.tasks.dsl import Definition
from conveyor.tasks.errors import TaskError
from conveyor.tasks.execution import Execution, StepLaunch, StepRecord, StepResult

__all__ = ["ClusterLauncher", "StepRuns", "cluster_command", "runs_conveyor"]

log = logging.getLogger("conveyor.orchestrate.task_cluster")
#: A step with no timeout of its own may run this long on a cluster (then it fails).
DEFAULT_TIMEOUT = 24 * 3600.0
_SHARED_FILES = ("input", "output")
Materialise = Callable[[Mapping[str, Mapping[str, Any]], Path], None]
#: Where a step's command runs in its image (the run's working folder).
_APP_FOLDER = Path("/app")


@dataclass(frozen=True)
class StepRuns:
    """Where steps' runs are recorded: the platform's registry, artifact store and settings."""

    registry: Registry
    artifacts: BlobStore
    settings: Settings


def cluster_command(app: TaskApp, params: Mapping[str, str], image: str | None) -> list[str]:
    """The step's command in its Job. A built-in or ``python:`` step runs Conveyor itself: in
    ``image`` when one was given, else in the target's runtime image (:func:`runs_conveyor`);
    the command is the same in either."""
    if app.sort == "command":
        return ["/bin/sh", "-c", str(app.command)]
    if app.name == "shell" and app.sort == "builtin":
        return ["/bin/sh", "-c", str(params.get("command", ""))]
    tail = ["python", str(app.uri)] if app.sort == "python" else [app.name]
    return ["python", "-m", "conveyor.tasks.builtins", *tail]


def runs_conveyor(app: TaskApp) -> bool:
    """Whether a step needs the runtime image (Conveyor installed): built-in steps (the shell
    one too, which has no files to build from) and ``python:`` ones."""
    return app.sort != "command"


def check_on_cluster(
    definition: Definition, apps: Mapping[str, TaskApp], image: str | None
) -> None:
    """Refuse, before anything runs, a task whose steps a cluster cannot run as defined."""
    for step in definition.apps():
        app = apps.get(step.name) or BUILTINS[step.name]
        params = {a.name: a.value for a in step.arguments}
        cluster_command(app, params, image)
        shared = [k for k in _SHARED_FILES if k in params]
        if shared:
            raise TaskError(
                f"step {step.step!r}: --{shared[0]} passes files between steps through this "
                "machine's folders, which pods do not share; read and write them through the "
                "artifact root instead"
            )


class ClusterLauncher:
    """Runs each step as a Job on ``target``; the executor's :class:`StepLauncher` there."""

    def __init__(
        self,
        target: KubernetesTarget,
        apps: Callable[[], Mapping[str, TaskApp]],
        materialise: Materialise,
        runs: StepRuns,
        *,
        target_name: str,
        image: str | None = None,
        secrets: SecretBox | None = None,
    ) -> None:
        self.target = target
        #: Unseals a step's sealed parameters (a sql step's URL) into its Job's environment.
        self.secrets = secrets
        self.apps = apps
        self.materialise = materialise
        self.runs = runs
        self.records = TaskRepository(runs.registry)
        self.target_name = target_name
        self.image = image
        self._built: dict[str, str] = {}

    def app(self, name: str) -> TaskApp:
        return task_app(self.apps(), name)

    async def run_step(self, launch: StepLaunch) -> StepResult:
        try:
            return await self._run(launch)
        except TaskError:
            raise
        except ConveyorError as error:  # the image or the cluster refused: the step failed
            raise TaskError(f"step {launch.step.name!r} on the cluster: {error}") from error

    async def _run(self, launch: StepLaunch) -> StepResult:
        execution, step = launch.execution, launch.step
        app = self.app(step.app)
        params = {**execution.params, **step.params}
        spec, command = self.step_spec(app, unseal_values(self.secrets, params))
        name = job_name(execution.task, step.name, execution.id, attempt=step.attempts)
        image = self.image or await self.built_image(app, spec, execution.attempts)
        # An image by tag may change under the same name: only a pinned one can be reused.
        key = step_cache_key(app, params, {}, image=image) if "@sha256:" in image else None
        if key is not None and app.cache and not launch.no_cache:
            hit = await asyncio.to_thread(self.records.cached, key)
            if hit is not None:
                return StepResult(0, hit[1], run_id=hit[0], cached=True, reason="cached")
        recording = await asyncio.to_thread(
            self._begin, execution, step, app, params, command, image, name
        )
        try:
            result = await self.target.launch(
                spec,
                name=name,
                revision=execution.attempts,
                droplet={},
                command=command,
                progress=lambda m: log.info("%s/%s: %s", execution.task, step.name, m),
                timeout=app.timeout or DEFAULT_TIMEOUT,
                image=image,
            )
        except asyncio.CancelledError:  # the execution was stopped: so is its Job
            await asyncio.shield(asyncio.to_thread(self.target.cluster.delete, "Job", name))
            recording.finish(-signal.SIGTERM, [], interrupted=True)
            raise
        except ConveyorError as error:  # the cluster refused the Job: the run failed
            await asyncio.to_thread(recording.finish, 1, [], error=str(error))
            raise
        failure = None
        if result.exit_code != 0:
            last = result.lines[-1] if result.lines else "no output"
            failure = f"Job {name} failed (exit {result.exit_code}): {last}"
        record = await asyncio.to_thread(self._finish, recording, result, failure)
        if result.exit_code == 0 and key is not None and app.cache:
            await asyncio.to_thread(self.records.remember, key, record, None)
        return StepResult(result.exit_code, None, run_id=record, reason=failure)

    def _begin(
        self,
        execution: Execution,
        step: StepRecord,
        app: TaskApp,
        params: Mapping[str, str],
        command: list[str],
        image: str,
        job: str,
    ) -> RemoteRecording:
        """The step's RUNNING run: its params, its app's code snapshot, and where it runs."""
        request = RunRequest(
            command=list(command),
            cwd=_APP_FOLDER,
            params=mask_sealed({k: str(v) for k, v in params.items() if k != "command"}),
            name=f"{execution.task}/{step.name}",
            # The task execution, for the step run's OpenLineage parent facet.
            parent={"run": execution.id, "job": execution.task},
            experiment=execution.task,
        )
        config = self.target.config
        where = {"target": self.target_name, "namespace": config.namespace, "job": job}
        if config.context:
            where["context"] = config.context
        environment: dict[str, Any] = {"image": image, "kubernetes": where}
        if app.droplet and app.droplet.get("lock_digest"):
            environment["lock_digest"] = app.droplet["lock_digest"]
        return RemoteRecording.begin(
            request,
            self.runs.settings,
            self.runs.artifacts,
            self.runs.registry,
            code=snapshot_of_files(app.files or {}, _APP_FOLDER, self.runs.artifacts),
            host=f"{self.target_name}/{config.namespace}",
            environment=environment,
        )

    @staticmethod
    def _finish(recording: RemoteRecording, result: LaunchResult, failure: str | None) -> str:
        where = {**recording.record.environment["kubernetes"], "pods": list(result.places)}
        record = recording.finish(
            result.exit_code,
            result.output or result.lines,
            error=failure,
            environment={"kubernetes": where},
        )
        return record.id

    def step_spec(self, app: TaskApp, params: Mapping[str, str]) -> tuple[AppSpec, list[str]]:
        """A step as an app spec for a Job (its parameters in ``CONVEYOR_PARAMS``) and its
        command."""
        command = cluster_command(app, params, self.image)
        given = {k: v for k, v in params.items() if k != "command"}
        spec = AppSpec(
            name=app.name,
            kind="command",
            command=" ".join(command),
            routes=(),
            env={"CONVEYOR_PARAMS": json.dumps(given, sort_keys=True)},
        )
        return spec, command

    async def schedule(
        self,
        name: str,
        *,
        task: str,
        definition: Definition,
        cron: str,
        time_zone: str | None,
        params: Mapping[str, str],
    ) -> dict[str, Any]:
        """Apply a schedule of a one-step task as a CronJob; the object applied."""
        steps = list(definition.apps())
        if len(steps) != 1:
            raise TaskError(
                f"task {task!r} has {len(steps)} steps, and a CronJob runs one Job: a composed "
                "task's schedule is the platform's (its control flow runs in the Conveyor server)"
            )
        check_on_cluster(definition, self.apps(), self.image)
        step = steps[0]
        app = self.app(step.name)
        given = {**params, **{a.name: a.value for a in step.arguments}}
        spec, command = self.step_spec(app, unseal_values(self.secrets, given))
        image = self.image or await self.built_image(app, spec, 1)
        return await self.target.schedule(
            spec,
            name=name,
            cron=cron,
            revision=1,
            droplet={},
            command=command,
            time_zone=time_zone,
            image=image,
            task=task,
        )

    async def built_image(self, app: TaskApp, spec: AppSpec, revision: int) -> str:
        """The app's image, built once per launcher from its droplet (or its files alone); a
        step that runs Conveyor is built on the target's runtime image, or runs in it when it
        has no files."""
        if app.name in self._built:
            return self._built[app.name]
        kind = "python-step" if runs_conveyor(app) else None
        if app.droplet:
            image = await self.target.image(app.droplet, spec, revision, kind=kind)
        elif app.files:
            with tempfile.TemporaryDirectory(prefix="conveyor-step-") as folder:
                self.materialise(app.files, Path(folder))
                image = await self.target.image({"source": folder}, spec, revision, kind=kind)
        elif runs_conveyor(app):
            image = await self.target.runtime_image()
        else:
            raise TaskError(
                f"task app {app.name!r} has no files to build an image from: register it with "
                "its folder, or launch with --image REF"
            )
        self._built[app.name] = image
        return image
