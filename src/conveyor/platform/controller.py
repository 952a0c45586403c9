"""The controller: makes the running instances match the desired state in the registry.

Every user operation (push, scale, set-env, restart, rollback, stop, start,
restage, delete) goes through :class:`Controller`, which records the desired
state first, then changes what runs::

    push ──stage──► revision N+1 ──deploy──► instances of N+1 healthy and routed
                                             └─► instances of N drained, then stopped

A deploy of a running app is rolling: the new revision's instances start
beside the old ones; only when all of them pass their health check are the
old ones taken out of routing, given a moment to finish what they were sent,
and stopped. If the new instances never become healthy, they are stopped,
the old ones never stopped serving, and the error carries the new instances'
last log lines.

Configuration changes (set-env, bind-service) make a revision that waits for
the next ``restart``, as in Cloud Foundry; a restart with nothing pending
makes a revision identical to the running one (as ``kubectl rollout restart``
does), so every deploy is "from one revision to another".

A platform that was killed leaves its instances running with nobody reading
their output. On start, the controller stops every process it had recorded
(checking the process start time, so a recycled pid is never touched) before
starting the desired instances again: one copy of everything, never two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import NotFoundError, UsageError
from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.droplets import Droplets, GcReport, check_upload_path
from conveyor.platform.errors import PlatformError
from conveyor.platform.health import HealthCheck
from conveyor.platform.instances import InstanceState
from conveyor.platform.logs import LogFiles
from conveyor.platform.processes import start_ticks, stop_groups
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.state import PlatformState, RevisionRecord
from conveyor.platform.supervisor import Event, Instance, InstanceSpec, Supervisor
from conveyor.platform.views import route_text
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry

__all__ = ["Controller", "DeployError", "Progress"]

log = logging.getLogger("conveyor.platform.controller")

Progress = Callable[[str], None]

#: How a model app is run: the serving runtime of the platform's own interpreter.
_SERVE = 'exec "$0" -m conveyor serve "$1" --host 127.0.0.1 --port "$PORT"'
#: How a stream app is run: one instance of the stream runtime.
_STREAM = 'exec "$0" -m conveyor.streams.run --instance-index "$CONVEYOR_INSTANCE_INDEX"'
#: How a model app is health-checked unless its manifest says otherwise.
_MODEL_CHECK = {"type": "http", "endpoint": "/v2/health/ready", "timeout": 60.0, "interval": 10.0}
_DEFAULT_CHECK = {"type": "port", "endpoint": "/", "timeout": 60.0, "interval": 10.0}
#: Events of instances that only move them in and out of routing: too many to keep.
_QUIET = frozenset({"ready", "unready"})
#: Lines of a failed instance's output a failed deploy reports.
_LAST_LINES = 15


class DeployError(PlatformError):
    """A new revision's instances never became healthy; the old ones kept serving."""


@dataclass(frozen=True)
class Deployment:
    """What a finished operation reports back."""

    app: str
    revision: int
    instances: int
    message: str


class Controller:
    """Owns the supervisor and the route table of one platform; runs on its event loop."""

    def __init__(
        self,
        registry: Registry,
        artifacts: BlobStore,
        platform_dir: Path,
        *,
        table: RouteTable | None = None,
        supervisor: Supervisor | None = None,
        backoff: CrashBackoff | None = None,
        drain: float = 0.5,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.state = PlatformState(registry)
        self.artifacts = artifacts
        self.dir = platform_dir
        self.table = table or RouteTable()
        self.backoff = backoff or CrashBackoff()
        self.supervisor = supervisor or Supervisor(
            events=self._on_event,
            backoff=self.backoff,
            base_env=base_env,
            log_files=LogFiles(platform_dir / "logs"),
        )
        self.drain = drain
        self._locks: dict[str, asyncio.Lock] = {}
        self.droplets = Droplets(artifacts, platform_dir)
        #: Who else keeps droplet folders (registered stream apps): each gives the ones in use.
        self.droplet_users: list[Callable[[], set[Path]]] = []
        self._changed = asyncio.Event()

    # -- events -----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.table.apply(event)
        if event.kind in ("started", "restarted"):
            pid = event.details.get("pid")
            ticks = start_ticks(pid) if isinstance(pid, int) else None
            if pid is not None and ticks is not None:
                self.state.record_process(event.key, pid, ticks)
        elif event.kind in ("crashed", "stopped"):
            self.state.forget_process(event.key)
        if event.kind not in _QUIET:
            details = {k: v for k, v in event.details.items() if _jsonable(v)}
            self.state.add_event(
                event.app,
                event.kind,
                details,
                at=event.at,
                instance=event.index,
                revision=event.revision or None,
            )
        self._changed.set()
        self._changed = asyncio.Event()

    def _event(self, app: str, kind: str, **details: Any) -> None:
        self.state.add_event(app, kind, details, revision=details.get("revision"))
        self.supervisor.logs(app).append(
            -1, "platform", kind + "".join(f" {k}={v}" for k, v in details.items()), at=time.time()
        )

    # -- start and stop of the platform -------------------------------------------

    async def start(self) -> None:
        """Stop what a killed platform left behind, then bring every started app back."""
        await asyncio.to_thread(self._reap_orphans)
        for app in self.state.apps():
            try:
                revision = self.state.revision(app.name, app.revision)
            except NotFoundError:
                continue
            self._set_routes(app.name, revision)
            self._restore_logs(app.name)
            if app.state == "started":
                spec = self._instance_spec(revision)
                for index in range(app.instances):
                    self.supervisor.start(spec, index)

    def _restore_logs(self, name: str) -> None:
        """Lines an app wrote before the platform restarted, back in `conveyor logs`."""
        files = self.supervisor.log_files
        if files is not None:
            self.supervisor.logs(name).restore(files.tail(name, 1000))

    async def close(self) -> None:
        """Stop every instance (the desired state stays as it is for the next start)."""
        await self.supervisor.stop_all()
        if self.supervisor.log_files is not None:
            self.supervisor.log_files.close()
        # A compilation cut short leaves no marker; the next staging of that lock redoes it.
        await self.droplets.drain()

    def _reap_orphans(self) -> None:
        leftovers = self.state.processes()
        for key, _pid, _ticks in leftovers:
            self.state.forget_process(key)
        stopped = stop_groups([(pid, ticks) for _key, pid, ticks in leftovers])
        if stopped:
            log.warning("stopped %d instance(s) left by a platform that died", stopped)

    # -- operations ---------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def push(
        self,
        name: str,
        spec: Mapping[str, Any],
        files: Mapping[str, Mapping[str, Any]] | None,
        instances: int,
        progress: Progress,
    ) -> Deployment:
        """Stage ``spec`` with ``files`` into a new revision and deploy it (rolling if running)."""
        self._check_spec(name, spec, files)
        async with self._lock(name):
            droplet = await self.droplets.stage(name, spec, files, progress, self._staged(name))
            existing = self.state.find_app(name)
            if existing is None:
                self.state.save_app(name, state="stopped", instances=instances, revision=0)
            elif spec["kind"] != "stream":
                # As in Cloud Foundry: variables set with set-env outlive a push; the
                # manifest's own values win for the names it gives.
                before = self.state.revisions(name)[-1].spec.get("env", {})
                spec = {**spec, "env": {**before, **spec.get("env", {})}}
            revision = self.state.add_revision(
                name, description="push", spec=spec, files=files, droplet=droplet
            )
            self._event(name, "pushed", revision=revision.number)
            try:
                return await self._deploy(name, revision, instances, progress)
            finally:
                # After the deploy, so that compiling never competes with the first start.
                if droplet is not None and "venv" in droplet:
                    self.droplets.compile_later(Path(droplet["venv"]))

    async def scale(self, name: str, instances: int) -> Deployment:
        if instances < 0:
            raise UsageError("the number of instances cannot be negative")
        async with self._lock(name):
            app = self.state.app(name)
            self.state.save_app(name, state=app.state, instances=instances, revision=app.revision)
            self._event(name, "scaled", instances=instances, previous=app.instances)
            if app.state != "started":
                return Deployment(name, app.revision, instances, "scaled (the app is stopped)")
            current = [
                i for i in self.supervisor.instances(name) if i.spec.revision == app.revision
            ]
            extra = [i for i in current if i.index >= instances]
            if extra:
                await self._retire(extra)
            revision = self.state.revision(name, app.revision)
            spec = self._instance_spec(revision)
            have = {i.index for i in current if i.index < instances}
            started = [self.supervisor.start(spec, i) for i in range(instances) if i not in have]
            failure = await self._await_healthy(started, spec.health)
            if failure:
                raise DeployError(
                    f"scaled {name} to {instances}, but new instances are not healthy: {failure}"
                )
            return Deployment(name, app.revision, instances, f"scaled to {instances}")

    async def set_env(self, name: str, values: Mapping[str, str], unset: Sequence[str]) -> int:
        """A revision with the environment changed; it runs after the next restart."""

        def change(spec: dict[str, Any]) -> str:
            env = dict(spec.get("env", {}))
            missing = [k for k in unset if k not in env]
            if missing:
                raise UsageError(f"app {name!r} has no variable {', '.join(missing)} to unset")
            env.update(values)
            for key in unset:
                env.pop(key)
            spec["env"] = env
            names = [*values, *(f"-{k}" for k in unset)]
            return "set-env " + " ".join(names)

        return await self._configure(name, change)

    async def bind(self, name: str, service: str, *, bound: bool) -> int:
        """A revision with ``service`` bound (or unbound); it runs after the next restart."""

        def change(spec: dict[str, Any]) -> str:
            services = list(spec.get("services", []))
            if bound:
                if service not in self.state.services():
                    raise NotFoundError(
                        f"there is no service named {service!r}",
                        hint=f"Create it first: conveyor create-service {service} -p '{{...}}'",
                    )
                if service in services:
                    raise UsageError(f"service {service!r} is already bound to {name!r}")
                services.append(service)
            else:
                if service not in services:
                    raise UsageError(f"service {service!r} is not bound to {name!r}")
                services.remove(service)
            spec["services"] = services
            return f"{'bind' if bound else 'unbind'}-service {service}"

        return await self._configure(name, change)

    async def _configure(self, name: str, change: Callable[[dict[str, Any]], str]) -> int:
        async with self._lock(name):
            self.state.app(name)
            latest = self.state.revisions(name)[-1]
            spec = json.loads(json.dumps(latest.spec))
            description = change(spec)
            revision = self.state.add_revision(
                name,
                description=description,
                spec=spec,
                files=latest.files,
                droplet=latest.droplet,
            )
            self._event(name, "configured", revision=revision.number, change=description)
            return revision.number

    async def restart(self, name: str, progress: Progress) -> Deployment:
        """Roll onto the newest revision (a copy of the running one if nothing is pending)."""
        async with self._lock(name):
            app = self.state.app(name)
            latest = self.state.revisions(name)[-1]
            if latest.number == app.revision:
                latest = self._copy(latest, "restart")
            return await self._deploy(name, latest, app.instances, progress)

    async def rollback(self, name: str, number: int, progress: Progress) -> Deployment:
        async with self._lock(name):
            app = self.state.app(name)
            target = self.state.revision(name, number)
            revision = self._copy(target, f"rollback to {number}")
            self._event(name, "rollback", revision=revision.number, to=number)
            return await self._deploy(name, revision, app.instances, progress)

    async def restage(self, name: str, progress: Progress) -> Deployment:
        async with self._lock(name):
            app = self.state.app(name)
            latest = self.state.revisions(name)[-1]
            droplet = await self.droplets.stage(
                name, latest.spec, latest.files, progress, self._staged(name), refresh=True
            )
            revision = self.state.add_revision(
                name, description="restage", spec=latest.spec, files=latest.files, droplet=droplet
            )
            return await self._deploy(name, revision, app.instances, progress)

    async def stop(self, name: str) -> Deployment:
        async with self._lock(name):
            app = self.state.app(name)
            self.state.save_app(
                name, state="stopped", instances=app.instances, revision=app.revision
            )
            await self._retire(self.supervisor.instances(name))
            self._event(name, "app-stopped")
            return Deployment(name, app.revision, 0, "stopped")

    async def start_app(self, name: str, progress: Progress) -> Deployment:
        async with self._lock(name):
            app = self.state.app(name)
            if app.state == "started":
                return Deployment(name, app.revision, app.instances, "already started")
            revision = (
                self.state.revision(name, app.revision)
                if app.revision
                else self.state.revisions(name)[-1]
            )
            return await self._deploy(name, revision, app.instances, progress)

    async def delete(self, name: str) -> None:
        async with self._lock(name):
            self.state.app(name)
            await self._retire(self.supervisor.instances(name))
            self.table.remove_app(name)
            self.supervisor.forget_logs(name)
            self.state.delete_app(name)
            self.state.delete_events(name)
        self._locks.pop(name, None)

    # -- services -----------------------------------------------------------------

    def delete_service(self, name: str) -> None:
        from conveyor.platform.views import services

        users: list[str] = next((s["bound_to"] for s in services(self) if s["name"] == name), [])
        if users:
            raise PlatformError(
                f"service {name!r} is bound to {', '.join(users)}",
                hint="Unbind it first: conveyor unbind-service <app> " + name,
            )
        self.state.delete_service(name)

    # -- droplets ---------------------------------------------------------------

    async def collect_droplets(self, *, dry_run: bool, min_age: float = 3600.0) -> GcReport:
        """Remove droplets that no kept revision (or registered stream app) points at."""
        keep: set[Path] = set()
        for app in self.state.apps():
            for revision in self.state.revisions(app.name):
                droplet = revision.droplet or {}
                keep.update(Path(droplet[k]) for k in ("venv", "source") if droplet.get(k))
        for provider in self.droplet_users:
            keep.update(provider())
        return await asyncio.to_thread(
            self.droplets.collect, keep, dry_run=dry_run, min_age=min_age
        )

    # -- the machinery --------------------------------------------------------------

    def _staged(self, name: str) -> Callable[..., None]:
        return lambda **details: self._event(name, "staged", **details)

    def _copy(self, source: RevisionRecord, description: str) -> RevisionRecord:
        return self.state.add_revision(
            source.app,
            description=description,
            spec=source.spec,
            files=source.files,
            droplet=source.droplet,
        )

    def _check_spec(
        self, name: str, spec: Mapping[str, Any], files: Mapping[str, Mapping[str, Any]] | None
    ) -> None:
        """Refuse a push that cannot work before anything is staged or stopped."""
        for route in _routes(name, spec):
            taken = self.table.owner(route)
            if taken is not None and taken != name:
                raise PlatformError(
                    f"route {route_text(route)} is already taken by app {taken!r}",
                    hint=f"Choose another host or path for {name!r} in its manifest.",
                )
        known = self.state.services()
        for service in spec.get("services", []):
            if service not in known:
                raise NotFoundError(
                    f"app {name!r} is bound to service {service!r}, which does not exist",
                    hint=f"Create it first: conveyor create-service {service} -p '{{...}}'",
                )
        for path, entry in (files or {}).items():
            check_upload_path(path)
            if not self.artifacts.exists(str(entry.get("digest", ""))):
                raise UsageError(
                    f"the file {path} of app {name!r} was not uploaded "
                    f"(no blob {entry.get('digest')})",
                    hint="Upload every missing blob before pushing (conveyor push does this).",
                )
        model = str(spec.get("model"))
        if spec["kind"] == "model" and not model.startswith("run:"):
            uploaded = files or {}
            if not any(p == model or p.startswith(model + "/") for p in uploaded):
                raise UsageError(f"app {name!r}: the model {spec['model']!r} was not uploaded")

    def _instance_spec(self, revision: RevisionRecord) -> InstanceSpec:
        spec = revision.spec
        droplet = revision.droplet or {}
        services = self.state.services()
        env: dict[str, str] = {
            **spec.get("env", {}),
            "CONVEYOR_APP": revision.app,
            "CONVEYOR_APP_REVISION": str(revision.number),
            "CONVEYOR_SERVICES": json.dumps(
                {
                    "user-provided": [
                        {"name": s, "credentials": services.get(s, {})}
                        for s in spec.get("services", [])
                    ]
                }
            ),
        }
        check = dict(spec.get("health_check") or _DEFAULT_CHECK)
        cwd: Path | None = None
        if spec["kind"] == "stream":
            # A stream app runs from the platform's own interpreter: nothing to stage.
            env["CONVEYOR_STREAM_APP"] = json.dumps(spec["stream_app"])
            command: tuple[str, ...] = ("/bin/sh", "-c", _STREAM, sys.executable)
            if check == _DEFAULT_CHECK:
                check = {**_DEFAULT_CHECK, "type": "http", "endpoint": "/health"}
            cwd = self.dir
        elif spec["kind"] == "model":
            model = str(spec["model"])
            if not model.startswith("run:"):
                model = str(Path(droplet["source"]) / model)
            command = ("/bin/sh", "-c", _SERVE, sys.executable, model)
            if check == _DEFAULT_CHECK:
                check = dict(_MODEL_CHECK)
            cwd = self.dir
        else:
            venv = Path(droplet["venv"])
            env["VIRTUAL_ENV"] = str(venv)
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
            command = ("/bin/sh", "-c", "exec " + str(spec["command"]))
            cwd = Path(droplet["source"])
        return InstanceSpec(
            app=revision.app,
            command=command,
            revision=revision.number,
            env=env,
            cwd=cwd,
            health=_health_check(check),
            readiness=_health_check(spec["readiness_check"])
            if spec.get("readiness_check")
            else None,
            memory_limit=spec.get("memory"),
        )

    def _set_routes(self, name: str, revision: RevisionRecord) -> None:
        self.table.set_routes(name, _routes(name, revision.spec))

    async def _deploy(
        self,
        name: str,
        revision: RevisionRecord,
        instances: int,
        progress: Progress,
    ) -> Deployment:
        """Run ``revision`` with ``instances`` instances, rolling over whatever runs now."""
        spec = self._instance_spec(revision)
        old = [i for i in self.supervisor.instances(name) if i.spec.revision != revision.number]
        progress(f"Starting {instances} instance(s) of revision {revision.number}...")
        new = [self.supervisor.start(spec, index) for index in range(instances)]
        failure = await self._await_healthy(new, spec.health)
        if failure is not None:
            lines = [
                line.format()
                for line in self.supervisor.logs(name).recent()
                if line.stream != "platform"
            ][-_LAST_LINES:]
            await self._retire(new, drain=False)
            self._event(name, "deploy-failed", revision=revision.number, reason=failure)
            kept = "; the previous revision keeps serving" if old else ""
            raise DeployError(
                f"revision {revision.number} of {name} did not become healthy: {failure}{kept}",
                hint="Its last lines:\n" + "\n".join(lines) if lines else None,
            )
        app = self.state.app(name)
        self.state.save_app(name, state="started", instances=instances, revision=revision.number)
        self._set_routes(name, revision)
        if old:
            progress(f"Draining {len(old)} instance(s) of the previous revision...")
            await self._retire(old)
        self._event(name, "deployed", revision=revision.number, previous=app.revision or None)
        return Deployment(
            name, revision.number, instances, f"revision {revision.number} is running"
        )

    async def _await_healthy(self, instances: list[Instance], health: HealthCheck) -> str | None:
        """None once every instance is RUNNING and routed; else why they never will be."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + health.timeout + 5.0
        while True:
            if all(i.ready for i in instances):
                return None
            for inst in instances:
                if inst.crashes > self.backoff.immediate:
                    reason = (inst.last_crash or {}).get("reason", "crashed")
                    return f"instance {inst.index} crashed {inst.crashes} times (last: {reason})"
                if inst.state is InstanceState.DOWN and inst.finished:
                    return f"instance {inst.index} was stopped"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return f"not every instance passed its health check within {health.timeout:g} s"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _retire(self, instances: list[Instance], *, drain: bool = True) -> None:
        """Take instances out of routing, let in-flight requests finish, stop and forget them."""
        if not instances:
            return
        for inst in instances:
            self.table.remove_backend(inst.spec.app, inst.name)
        if drain and self.drain > 0 and any(i.ready for i in instances):
            await asyncio.sleep(self.drain)
        await asyncio.gather(
            *(self.supervisor.stop(i.spec.app, i.index, i.spec.revision) for i in instances)
        )
        for inst in instances:
            self.supervisor.forget(inst.spec.app, inst.index, inst.spec.revision)


def _routes(name: str, spec: Mapping[str, Any]) -> list[Route]:
    given = spec.get("routes")
    if given is None:  # the platform's default: /<name> (prefix stripped) and <name>.localhost
        return [
            Route(name, path=f"/{name}", strip_prefix=True),
            Route(name, host=f"{name}.localhost"),
        ]
    return [
        Route(
            name, host=r.get("host"), path=r.get("path"), strip_prefix=bool(r.get("strip_prefix"))
        )
        for r in given
    ]


def _health_check(check: Mapping[str, Any]) -> HealthCheck:
    return HealthCheck(
        check["type"], check["endpoint"], float(check["timeout"]), float(check["interval"])
    )


def _route_text(route: Route) -> str:
    return (route.host or "") + (route.path or "")


def _jsonable(value: object) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, tuple, dict))
