"""The controller: makes the running instances match the desired state in the registry.

Every user operation (push, scale, set-env, restart, rollback, stop, start,
restage, delete) goes through :class:`Controller`, which records the desired
state first, then changes what runs::

    push ──stage──► revision N+1 ──deploy──► instances of N+1 healthy and routed
                                             └─► instances of N drained, then stopped

What runs is the deployment target's business (:mod:`.target`; the local one
is the supervisor and route table, :mod:`.local`): the controller turns a
revision into a :class:`~.target.Release` (:mod:`.releases`, asking the app's
kind what an instance runs) and the target deploys it, rolling:
the new revision's instances start beside the old ones, and the old ones
drain and stop only when all the new ones are healthy. If they never become
healthy the old ones never stopped serving, and the error carries the new
instances' last log lines.

Configuration changes (set-env, bind-service) make a revision that waits for
the next ``restart``, as in Cloud Foundry; a restart with nothing pending
makes a revision identical to the running one (as ``kubectl rollout restart``
does), so every deploy is "from one revision to another".

On start, the target first stops what a platform that died left running,
then the controller restores every app as recorded: one copy of everything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFoundError, UsageError
from conveyor.platform.autoscaling import Autoscaling
from conveyor.platform.canary import Canaries, CanaryPolicy
from conveyor.platform.clock import Clock, SystemClock
from conveyor.platform.configure import with_env, with_service
from conveyor.platform.droplets import Droplets, GcReport
from conveyor.platform.errors import DeployError, PlatformError
from conveyor.platform.kinds import Files, Staging, kind_named
from conveyor.platform.releases import check_push, release_of, revision_spec
from conveyor.platform.router import Meter
from conveyor.platform.spec import AppSpec
from conveyor.platform.supervisor import Event
from conveyor.platform.target import Progress, Release, Target
from conveyor.store.apps import AppRepository, RevisionRecord
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from conveyor.store.secrets import SecretBox

if TYPE_CHECKING:
    from conveyor.platform.autoscaler import Decision
    from conveyor.repro.lookup import RunModel

__all__ = ["Controller", "DeployError", "Progress"]

log = logging.getLogger("conveyor.platform.controller")

#: Events of instances that only move them in and out of routing: too many to keep.
_QUIET = frozenset({"ready", "unready"})
#: Lines of output a failed deploy's event keeps (`conveyor app` shows them).
_FAILED_LINES = 10


@dataclass(frozen=True)
class Deployment:
    """What a finished operation reports back."""

    app: str
    revision: int
    instances: int
    message: str


class Controller:
    """Keeps one platform's desired state and makes its target run it; on its event loop.

    Without a ``target`` the apps run here (:class:`~.local.LocalTarget`); without a
    ``secrets`` box, service credentials are sealed with the key ``secrets.key`` in
    ``platform_dir``.
    """

    def __init__(
        self,
        registry: Registry,
        artifacts: BlobStore,
        platform_dir: Path,
        *,
        target: Target | None = None,
        base_env: Mapping[str, str] | None = None,
        secrets: SecretBox | None = None,
        meter: Meter | None = None,
        clock: Clock | None = None,
    ) -> None:
        #: The desired state: apps, revisions, events, services (their credentials sealed).
        self.state = AppRepository(registry, secrets or SecretBox(platform_dir / "secrets.key"))
        self.artifacts = artifacts
        self.dir = platform_dir
        #: What the router measures of each app (give the router this one).
        self.meter = meter or Meter()
        if target is None:
            from conveyor.platform.local import LocalTarget

            target = LocalTarget(
                self.state,
                log_dir=platform_dir / "logs",
                base_env=dict(base_env or {}),
                in_flight=self.meter.in_flight,
            )
        self.target = target
        target.watch(self._on_event)
        self._locks: dict[str, asyncio.Lock] = {}
        self.droplets = Droplets(artifacts, platform_dir)
        #: Who else keeps droplet folders (registered stream apps): each gives the ones in use.
        self.droplet_users: list[Callable[[], set[Path]]] = []
        #: Scales the apps with an ``autoscaling`` policy; its ``wake`` is the router's.
        self.autoscaling = Autoscaling(self, self.meter, clock or SystemClock())
        #: Canary releases in progress (:mod:`.canary`), judged on ``clock``.
        self.canaries = Canaries(self, clock or SystemClock())

    # -- events -----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
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

    def _event(self, app: str, kind: str, **details: Any) -> None:
        self.state.add_event(app, kind, details, revision=details.get("revision"))
        shown = "".join(f" {k}={v}" for k, v in details.items() if k != "last_lines")
        self.target.logs(app).append(-1, "platform", kind + shown, at=time.time())

    # -- start and stop of the platform -------------------------------------------

    async def start(self) -> None:
        """Stop what a killed platform left behind, then bring every app back as recorded."""
        await self.target.start()
        if self.state.seal_stored_env():  # revisions from before variables' secrets were sealed
            log.info("secrets kept in clear in apps' variables are now sealed")
        for app in self.state.apps():
            try:
                revision = self.state.revision(app.name, app.revision)
            except NotFoundError:
                continue
            started = app.state == "started"
            self.target.restore(self.release(revision), app.instances if started else 0)
            self.canaries.after_restart(app.name)
        self.autoscaling.start()

    async def close(self) -> None:
        """Stop every instance (the desired state stays as it is for the next start)."""
        await self.canaries.close()
        await self.autoscaling.close()
        await self.target.close()
        # A compilation cut short leaves no marker; the next staging of that lock redoes it.
        await self.droplets.drain()

    # -- operations ---------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    #: For the operations kept beside the controller (:mod:`.canary`): the app's lock, an event.
    lock = _lock
    event = _event

    async def push(
        self,
        spec: AppSpec,
        files: Files | None,
        instances: int,
        progress: Progress,
        *,
        canary: CanaryPolicy | None = None,
    ) -> Deployment:
        """Stage ``spec`` with ``files`` into a new revision and deploy it (rolling if running).

        With ``canary`` the revision runs beside the current one instead, sent a
        share of the requests (:mod:`.canary`).
        """
        name = spec.name
        kind = kind_named(spec.kind)
        check_push(spec, files, target=self.target, state=self.state, artifacts=self.artifacts)
        policy = spec.autoscaling
        if policy is not None:  # start within the policy's bounds
            instances = max(policy.min_instances, min(policy.max_instances, instances))
        async with self._lock(name):
            canary = self.canaries.policy_for(spec, canary)
            if canary is None:
                self.canaries.refuse_running(name, "a push")
            else:
                self.canaries.check_start(spec)
            droplet = await kind.stage(spec, files, self._staging(name, progress))
            existing = self.state.find_app(name)
            if existing is None:
                self.state.save_app(name, state="stopped", instances=instances, revision=0)
            elif kind.keeps_set_env:
                # As in Cloud Foundry: variables set with set-env outlive a push; the
                # manifest's own values win for the names it gives.
                before = self.spec(self.state.revisions(name)[-1]).env
                spec = dataclasses.replace(spec, env={**before, **spec.env})
            description = "push" if canary is None else f"push --canary {canary.weight}"
            revision = self.state.add_revision(
                name, description=description, spec=spec.to_json(), files=files, droplet=droplet
            )
            self._event(name, "pushed", revision=revision.number)
            try:
                if canary is not None:
                    return await self.canaries.begin(revision, instances, canary, progress)
                return await self._deploy(name, revision, instances, progress)
            finally:
                # After the deploy, so that compiling never competes with the first start.
                if droplet is not None and "venv" in droplet:
                    self.droplets.compile_later(Path(droplet["venv"]))

    async def stage(
        self, spec: AppSpec, files: Files | None, progress: Progress
    ) -> Mapping[str, Any] | None:
        """Stage ``spec``'s droplet only (another target builds its image); none is recorded."""
        async with self._lock(spec.name):
            staging = Staging(self.droplets, progress, _unrecorded, run_model=self.run_model)
            droplet = await kind_named(spec.kind).stage(spec, files, staging)
            return None if droplet is None else dict(droplet)

    async def scale(self, name: str, instances: int) -> Deployment:
        if instances < 0:
            raise UsageError("the number of instances cannot be negative")
        async with self._lock(name):
            app = self.state.app(name)
            self.canaries.check_scale(name, instances)
            self.state.save_app(name, state=app.state, instances=instances, revision=app.revision)
            self._event(name, "scaled", instances=instances, previous=app.instances)
            if app.state != "started":
                return Deployment(name, app.revision, instances, "scaled (the app is stopped)")
            revision = self.state.revision(name, app.revision)
            if not await self.canaries.scale(name, instances):  # a canary shares the count
                await self.target.scale(self.release(revision), instances)
            return Deployment(name, app.revision, instances, f"scaled to {instances}")

    async def autoscale(self, name: str, decision: Decision) -> None:
        """Carry out the autoscaler's ``decision`` (unless the app changed meanwhile)."""
        async with self._lock(name):
            app = self.state.find_app(name)
            if app is None or app.state != "started" or app.instances != decision.previous:
                return
            self.state.save_app(
                name, state=app.state, instances=decision.instances, revision=app.revision
            )
            self._event(
                name,
                "scaled",
                instances=decision.instances,
                previous=decision.previous,
                reason=decision.reason,
                by="autoscaler",
            )
            revision = self.state.revision(name, app.revision)
            if not await self.canaries.scale(name, decision.instances):  # a canary shares it
                await self.target.scale(self.release(revision), decision.instances)

    async def set_env(
        self, name: str, values: Mapping[str, str], unset: Sequence[str], *, secret: bool = False
    ) -> int:
        """A revision with the environment changed; it runs after the next restart. With
        ``secret`` the values are sealed in the registry whatever their names."""
        box = self.state.secrets
        if secret and box is not None:
            values = {key: box.seal_text(value) for key, value in values.items()}
        return await self._configure(name, lambda spec: with_env(spec, values, unset))

    async def bind(self, name: str, service: str, *, bound: bool) -> int:
        """A revision with ``service`` bound (or unbound); it runs after the next restart."""
        return await self._configure(
            name,
            lambda spec: with_service(spec, service, bound=bound, known=self.state.services()),
        )

    async def _configure(self, name: str, change: Callable[[AppSpec], tuple[AppSpec, str]]) -> int:
        async with self._lock(name):
            self.state.app(name)
            latest = self.state.revisions(name)[-1]
            spec, description = change(self.spec(latest))
            revision = self.state.add_revision(
                name,
                description=description,
                spec=spec.to_json(),
                files=latest.files,
                droplet=latest.droplet,
            )
            self._event(name, "configured", revision=revision.number, change=description)
            return revision.number

    async def restart(self, name: str, progress: Progress) -> Deployment:
        """Roll onto the newest revision (a copy of the running one if nothing is pending)."""
        async with self._lock(name):
            self.canaries.refuse_running(name, "a restart")
            app = self.state.app(name)
            latest = self.state.revisions(name)[-1]
            if latest.number == app.revision:
                latest = self._copy(latest, "restart")
            return await self._deploy(name, latest, app.instances, progress)

    async def rollback(self, name: str, number: int, progress: Progress) -> Deployment:
        async with self._lock(name):
            self.canaries.refuse_running(name, "a rollback")
            app = self.state.app(name)
            target = self.state.revision(name, number)
            revision = self._copy(target, f"rollback to {number}")
            self._event(name, "rollback", revision=revision.number, to=number)
            return await self._deploy(name, revision, app.instances, progress)

    async def restage(
        self,
        name: str,
        progress: Progress,
        *,
        description: str = "restage",
        refresh: bool = True,
        event: Mapping[str, Any] | None = None,
    ) -> Deployment:
        """Stage the newest revision again into a new one and roll onto it.

        Following a moved model alias is a restage too (``refresh`` False: the
        environment stays, the model is looked up again), recorded as ``event``.
        """
        async with self._lock(name):
            self.canaries.refuse_running(name, "a restage")
            app = self.state.app(name)
            latest = self.state.revisions(name)[-1]
            spec = self.spec(latest)
            droplet = await kind_named(spec.kind).stage(
                spec, latest.files, self._staging(name, progress, refresh=refresh)
            )
            revision = self.state.add_revision(
                name, description=description, spec=latest.spec, files=latest.files, droplet=droplet
            )
            if event is not None:
                self._event(name, str(event["kind"]), revision=revision.number,
                            **{k: v for k, v in event.items() if k != "kind"})  # fmt: skip
            return await self._deploy(name, revision, app.instances, progress)

    async def stop(self, name: str) -> Deployment:
        async with self._lock(name):
            self.canaries.refuse_running(name, "a stop")
            app = self.state.app(name)
            self.state.save_app(
                name, state="stopped", instances=app.instances, revision=app.revision
            )
            await self.target.stop(name)
            self._event(name, "app-stopped")
            return Deployment(name, app.revision, 0, "stopped")

    async def start_app(self, name: str, progress: Progress) -> Deployment:
        async with self._lock(name):
            self.canaries.refuse_running(name, "a start")
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
            self.canaries.forget(name)
            await self.target.undeploy(name)
            self.state.delete_app(name)
            self.state.delete_events(name)
        self._locks.pop(name, None)
        self.meter.forget(name)

    # -- services -----------------------------------------------------------------

    def delete_service(self, name: str) -> None:
        users = self.state.bindings().get(name, [])
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

    def spec(self, revision: RevisionRecord) -> AppSpec:
        """The typed spec of a stored revision."""
        return revision_spec(revision)

    def _staging(self, name: str, progress: Progress, *, refresh: bool = False) -> Staging:
        def staged(**details: Any) -> None:
            self._event(name, "staged", **details)

        return Staging(self.droplets, progress, staged, refresh, run_model=self.run_model)

    def run_model(self, uri: str) -> RunModel:
        """Export the model a ``run:`` or ``models:/`` URI names for instances to read
        (they see no registry), verified against its digest."""
        from conveyor.repro.registered import export_model

        return export_model(uri, self.state.registry, self.artifacts, self.dir / "run-models")

    def _copy(self, source: RevisionRecord, description: str) -> RevisionRecord:
        return self.state.add_revision(
            source.app,
            description=description,
            spec=source.spec,
            files=source.files,
            droplet=source.droplet,
        )

    def release(self, revision: RevisionRecord) -> Release:
        """What the target runs for ``revision`` (:func:`.releases.release_of`)."""
        return release_of(revision, self.state, self.dir)

    async def _deploy(
        self,
        name: str,
        revision: RevisionRecord,
        instances: int,
        progress: Progress,
    ) -> Deployment:
        """Run ``revision`` with ``instances`` instances, rolling over whatever runs now."""
        try:
            await self.target.deploy(self.release(revision), instances, progress)
        except DeployError as failed:
            self.record_failure(name, revision.number, failed)
            raise
        app = self.state.app(name)
        self.state.save_app(name, state="started", instances=instances, revision=revision.number)
        self._event(name, "deployed", revision=revision.number, previous=app.revision or None)
        return Deployment(
            name, revision.number, instances, f"revision {revision.number} is running"
        )

    def record_failure(self, name: str, revision: int, failed: DeployError) -> None:
        """A ``deploy-failed`` event: why, and the instances' last lines."""
        self._event(
            name,
            "deploy-failed",
            revision=revision,
            reason=failed.reason,
            last_lines=failed.lines[-_FAILED_LINES:],
        )


def _unrecorded(**details: Any) -> None:
    """A droplet staged for another target: no event of a local app tells of it."""


def _jsonable(value: object) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, tuple, dict))
