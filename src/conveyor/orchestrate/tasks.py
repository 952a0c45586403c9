"""Composed tasks on the platform: definitions, task apps, and executions launched through it.

The task service sits above the platform and the tasks package, as the
stream service does: it keeps definitions and task apps in the registry
(:mod:`conveyor.store.tasks`), checks a definition against the catalogue when
it is created, and runs each launch as an :class:`~conveyor.tasks.execution.Executor`
on the platform's event loop whose steps go through the platform's target
(:mod:`.task_launcher`). Every change of an execution's state is written to the
registry before the executor goes on; when the platform starts again after
being killed, executions it finds RUNNING are marked STOPPED, restartable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import NotFoundError, UsageError
from conveyor.orchestrate.task_cluster import ClusterLauncher, StepRuns, check_on_cluster
from conveyor.orchestrate.task_launcher import TargetLauncher
from conveyor.orchestrate.task_secrets import seal_definition, seal_properties, seal_stored_tasks
from conveyor.platform import (
    Controller,
    KubernetesTarget,
    Progress,
    Staging,
    check_upload_path,
)
from conveyor.store.sealing import mask_sealed
from conveyor.store.tasks import TaskRepository
from conveyor.tasks.catalogue import BUILTINS, TaskApp, check_apps, parse_python_uri
from conveyor.tasks.dsl import check_task_name, parse_definition, to_graph
from conveyor.tasks.errors import TaskError
from conveyor.tasks.execution import (
    Execution,
    Executor,
    StepLauncher,
    mark_interrupted,
    new_execution,
    prepare_restart,
)

__all__ = ["TaskService"]

_REQUIREMENTS = ("requirements.txt", "pyproject.toml")
#: A Kubernetes target by its name (UsageError or NotFoundError when there is none).
ClusterTargets = Callable[[str], KubernetesTarget]


class TaskService:
    """Task apps, definitions and executions; see the module's docstring."""

    def __init__(
        self,
        controller: Controller,
        *,
        width: int = 4,
        runs_dir: Path | None = None,
        clusters: ClusterTargets | None = None,
    ):
        self.controller = controller
        self.records = TaskRepository(controller.state.registry)
        #: Seals URLs' passwords (a sql step's --url) before the registry keeps them.
        self.secrets = controller.state.secrets
        if self.secrets is not None:  # rows from before they were sealed
            seal_stored_tasks(self.secrets, self.records)
        self.width = width
        self.runs_dir = runs_dir
        self.launcher = TargetLauncher(
            controller.target,
            controller.state.registry,
            controller.artifacts,
            controller.dir / "task-work",
            self.apps,
            controller.droplets.materialise,
            secrets=self.secrets,
        )
        #: Kubernetes targets by name (injected by the server), for executions run there.
        self.clusters = clusters
        self._running: dict[str, tuple[Executor, asyncio.Task[Execution]]] = {}
        controller.droplet_users.append(self._droplets_in_use)

    # -- task apps ----------------------------------------------------------------

    def apps(self) -> dict[str, TaskApp]:
        """Registered task apps by name (the built-ins are in ``BUILTINS``)."""
        return {name: TaskApp.from_json(spec) for name, spec in self.records.apps().items()}

    def catalogue(self) -> list[dict[str, Any]]:
        every = {**BUILTINS, **self.apps()}
        return [every[name].to_json() for name in sorted(every)]

    def _droplets_in_use(self) -> set[Path]:
        used: set[Path] = set()
        for app in self.apps().values():
            for key in ("venv", "source"):
                if app.droplet and app.droplet.get(key):
                    used.add(Path(str(app.droplet[key])))
        return used

    async def register_app(
        self,
        app: TaskApp,
        progress: Progress = lambda _m: None,
    ) -> dict[str, Any]:
        """Register a task app; a folder with requirements gets a droplet staged like a push."""
        app.check_name()
        if app.name in BUILTINS:
            raise UsageError(
                f"{app.name!r} is a built-in task app; register yours under another name"
            )
        if app.sort == "python":
            parse_python_uri(str(app.uri))
        elif app.sort == "command":
            if not app.command:
                raise UsageError(f"task app {app.name!r}: a command app needs --command")
        else:
            raise UsageError(
                f"task app {app.name!r}: give --command or --uri python:module:function"
            )
        if app.timeout is not None and app.timeout <= 0:
            raise UsageError(
                f"task app {app.name!r}: --timeout must be a positive number of seconds"
            )
        droplet = None
        for path, entry in (app.files or {}).items():
            check_upload_path(path)
            if not self.controller.artifacts.exists(str(entry.get("digest", ""))):
                raise UsageError(f"the file {path} of task app {app.name!r} was not uploaded")
        requirements = next((r for r in _REQUIREMENTS if r in (app.files or {})), None)
        if app.files and requirements is not None:
            staging = Staging(self.controller.droplets, progress, lambda **_details: None)
            droplet = await self.controller.droplets.build(
                app.name, requirements, app.files, staging
            )
        registered = TaskApp(**{**app.to_json(), "droplet": droplet, "required": app.required})
        self.records.save_app(app.name, registered.to_json())
        return registered.to_json()

    def unregister_app(self, name: str) -> None:
        for task, text in self.records.tasks():
            if any(a.name == name for a in parse_definition(text).apps()):
                raise UsageError(
                    f"task {task!r} uses the task app {name!r}",
                    hint=f"Destroy the task first: conveyor task destroy {task}",
                )
        self.records.delete_app(name)

    # -- definitions --------------------------------------------------------------

    def validate(self, name: str, definition: str) -> dict[str, Any]:
        """The definition parsed and checked against the catalogue: its steps and graph."""
        check_task_name(name)
        parsed = parse_definition(definition)
        check_apps(parsed, self.apps())
        if self.secrets is not None:  # shown with URLs' passwords masked
            definition = seal_definition(self.secrets, definition)
            parsed = parse_definition(definition)
        shown = {
            "name": name,
            "definition": definition,
            "steps": [
                {
                    "name": app.step,
                    "app": app.name,
                    "params": {a.name: a.value for a in app.arguments},
                }
                for app in parsed.apps()
            ],
            "graph": to_graph(parsed).to_json(),
        }
        return dict(mask_sealed(shown))  # sealed URL passwords as ***

    def create(self, name: str, definition: str) -> dict[str, Any]:
        self.validate(name, definition)
        if self.secrets is not None:  # the registry keeps no URL's password in clear
            definition = seal_definition(self.secrets, definition)
        self.records.create(name, definition)
        return self.validate(name, definition)

    def list_tasks(self) -> list[dict[str, Any]]:
        last: dict[str, str] = {}
        for doc in reversed(self.records.executions()):
            last[doc["task"]] = doc["state"]
        return [
            {"name": name, "definition": mask_sealed(text), "last_execution": last.get(name)}
            for name, text in self.records.tasks()
        ]

    def info(self, name: str) -> dict[str, Any]:
        described = self.validate(name, self.records.definition(name))
        described["executions"] = [_summary(doc) for doc in self.records.executions(name)[:10]]
        return described

    async def destroy(self, name: str) -> dict[str, Any]:
        self.records.definition(name)
        for executor, task in list(self._running.values()):
            if executor.execution.task == name:
                executor.stop("the task was destroyed")
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.records.destroy(name)
        return {"name": name, "destroyed": True}

    # -- executions ---------------------------------------------------------------

    async def launch(
        self,
        name: str,
        params: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        *,
        no_cache: bool = False,
        target: str | None = None,
        image: str | None = None,
    ) -> dict[str, Any]:
        """Start an execution of task ``name``; returns it as it starts (steps PENDING).

        With ``target`` (a Kubernetes target) each step runs there as a Job, from
        ``image`` or from an image built of its task app's files.
        """
        text = self.records.definition(name)
        definition = parse_definition(text)
        check_apps(definition, self.apps())
        if target is not None:
            self.cluster(target)  # an unknown target is refused before anything starts
            check_on_cluster(definition, self.apps(), image)
        elif image is not None:
            raise UsageError("--image is for a Kubernetes target: add --target NAME")
        for key in properties or {}:
            if not key.startswith("app."):
                raise UsageError(
                    f"property {key!r} is not for a step; expected app.<step>.<option>=value"
                )
        if self.secrets is not None:  # kept with the execution: URLs' passwords sealed
            params = seal_properties(self.secrets, params or {})
            properties = seal_properties(self.secrets, properties or {})
        execution = new_execution(
            name, definition, text, params=params, properties=properties, no_cache=no_cache
        )
        execution.target, execution.image = target, image
        self._start(execution)
        return dict(mask_sealed(execution.to_json()))

    def _start(self, execution: Execution) -> None:
        definition = parse_definition(execution.definition)
        launcher: StepLauncher = self.launcher
        if execution.target is not None:
            launcher = self.cluster_launcher(execution.target, execution.image)
        executor = Executor(definition, execution, launcher, self._save, width=self.width)
        self._save(execution)  # recorded before the launch answers: its id is usable at once
        task = asyncio.ensure_future(executor.run())
        self._running[execution.id] = (executor, task)
        task.add_done_callback(lambda _t: self._running.pop(execution.id, None))

    def cluster_launcher(self, target: str, image: str | None) -> ClusterLauncher:
        """Steps as Jobs on ``target`` (from ``image``, else built), each recorded as a run."""
        runs = StepRuns(
            self.controller.state.registry, self.controller.artifacts, self.launcher.settings
        )
        return ClusterLauncher(
            self.cluster(target),
            self.apps,
            self.controller.droplets.materialise,
            runs,
            target_name=target,
            image=image,
            secrets=self.secrets,
        )

    def cluster(self, target: str) -> KubernetesTarget:
        if self.clusters is None:
            raise UsageError("this platform runs tasks on this machine only (no targets)")
        return self.clusters(target)

    def _save(self, execution: Execution) -> None:
        self.records.save_execution(execution.to_json())

    async def wait(self, execution_id: str) -> dict[str, Any]:
        """The execution once it has ended (tests and ``--wait`` use this)."""
        doc = self.records.execution(execution_id)
        running = self._running.get(doc["id"])
        if running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(running[1])
        return self.status(doc["id"])

    def is_running(self, execution_id: str) -> bool:
        """Whether this platform is running that execution now."""
        return execution_id in self._running

    def executions(self, task: str | None = None) -> list[dict[str, Any]]:
        if task is not None:
            self.records.definition(task)
        return [_summary(doc) for doc in self.records.executions(task)]

    def status(self, execution_id: str) -> dict[str, Any]:
        return dict(mask_sealed(self.records.execution(execution_id)))

    def log(self, execution_id: str, step: str | None = None) -> list[dict[str, Any]]:
        """Each step's recorded output (its run's stdout and stderr), in the order they ran."""
        doc = self.records.execution(execution_id)
        steps = [s for s in doc["steps"] if step is None or s["name"] == step]
        if step is not None and not steps:
            names = ", ".join(s["name"] for s in doc["steps"])
            raise NotFoundError(f"execution {doc['id']} has no step {step!r}; its steps: {names}")
        found = []
        for s in sorted(steps, key=lambda s: s["started_at"] or 0):
            lines: list[str] = []
            if s["run_id"] and self.runs_dir is not None:
                for stream in ("stdout", "stderr"):
                    path = self.runs_dir / s["run_id"] / f"{stream}.log"
                    if path.is_file():
                        lines += path.read_text(errors="replace").splitlines()[-500:]
            found.append(
                {"step": s["name"], "state": s["state"], "run_id": s["run_id"], "lines": lines}
            )
        return found

    async def stop(self, execution_id: str) -> dict[str, Any]:
        doc = self.records.execution(execution_id)
        running = self._running.get(doc["id"])
        if running is None:
            raise TaskError(
                f"execution {doc['id']} is {doc['state']}, not running; nothing to stop"
            )
        running[0].stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(running[1])
        return self.status(doc["id"])

    async def restart(
        self, execution_id: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Run the failed and unrun steps again (original params unless new ones are given)."""
        doc = self.records.execution(execution_id)
        if doc["id"] in self._running:
            raise TaskError(
                f"execution {doc['id']} is still running; stop it first "
                f"(conveyor task execution stop {doc['id']})"
            )
        execution = Execution.from_json(doc)
        check_apps(parse_definition(execution.definition), self.apps())
        if self.secrets is not None and params is not None:
            params = seal_properties(self.secrets, params)
        prepare_restart(execution, params)
        self._start(execution)
        return dict(mask_sealed(execution.to_json()))

    def recover(self) -> int:
        """At start-up: executions a killed platform left RUNNING become STOPPED, restartable."""
        count = 0
        for doc in self.records.executions(state="RUNNING"):
            if doc["id"] in self._running:
                continue
            execution = Execution.from_json(doc)
            if mark_interrupted(execution, "the platform stopped while it ran; restart it"):
                self._save(execution)
                count += 1
        return count

    async def close(self) -> None:
        """Stop every running execution (the platform is going down); each stays restartable."""
        for executor, task in list(self._running.values()):
            executor.stop("the platform stopped while it ran; restart it")
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "task": doc["task"],
        "state": doc["state"],
        "reason": doc["reason"],
        "started_at": doc["started_at"],
        "ended_at": doc["ended_at"],
        "attempts": doc["attempts"],
        "steps": {
            s["name"]: s["state"] + (" (cached)" if s["cached"] else "") for s in doc["steps"]
        },
    }
