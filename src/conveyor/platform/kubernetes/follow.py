"""Model apps on a Kubernetes target that follow their alias: a new revision there when it moves.

A push of an app whose manifest says ``follow-alias: true`` marks its
Deployment (:data:`~.render.FOLLOW_ALIAS` as a label and an annotation, its
spec in :data:`~.render.APP_SPEC`): the cluster remembers which apps follow
which alias, as it keeps their revisions, and deleting the app forgets it.

Every few seconds the platform lists the marked Deployments of each target
that has an artifact root, and compares the version each alias names now with
the one the Deployment serves (``conveyor.dev/model-version``). When they
differ it publishes the new version's blob to the target's artifact root and
renders the app again from its spec at the next revision (same image, the
replicas the cluster has now), rolled out as a push is: a rollout that fails
puts the previous revision back, and that version is not tried again until
the alias moves once more. Each attempt leaves a Kubernetes Event on the
Deployment — ``AliasMoved``, or ``AliasMoveFailed`` (a Warning) with why —
which ``kubectl describe deployment APP`` shows.

A roll holds the app's lock (``lock(target, app)``, the one the control API's
push, set-env, restart and rollback of that app hold) and reads the Deployment
again under it: what a change made meanwhile (a set-env writes its variables
into the spec) is what it renders from::

    follower = ClusterAliasFollower(registry, artifacts, roots, services, lock=locks)
    await follower.check()       # ["prod/diagnosis"]: the apps rolled onto a new version
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.platform.follow import look_every
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.models import ArtifactRoots, publish_model
from conveyor.platform.kubernetes.render import APP_SPEC, FOLLOW_ALIAS, model_lineage, selector
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry

__all__ = ["INTERVAL", "ClusterAliasFollower", "following"]

log = logging.getLogger("conveyor.platform.kubernetes.follow")

#: Seconds between two looks at each target's following apps (one list request each).
INTERVAL = 5.0
_VERSION = "conveyor.dev/model-version"
_MANAGED = {"app.kubernetes.io/managed-by": "conveyor", FOLLOW_ALIAS: "true"}


def following(target: KubernetesTarget) -> list[dict[str, Any]]:
    """The Deployments on ``target`` whose app follows its model's alias."""
    return [d for d in target.cluster.items("Deployment", _MANAGED) if _follows(d)]


def _follows(deployment: Mapping[str, Any]) -> bool:
    """Whether a Deployment is marked as following its alias (the selector, checked here)."""
    meta = deployment["metadata"]
    return all((meta.get("labels") or {}).get(k) == v for k, v in _MANAGED.items()) and bool(
        (meta.get("annotations") or {}).get(APP_SPEC)
    )


class ClusterAliasFollower:
    """Rolls apps on Kubernetes targets onto the version their alias points at now."""

    def __init__(
        self,
        registry: Registry,
        artifacts: BlobStore,
        roots: ArtifactRoots,
        services: Callable[[], Mapping[str, Mapping[str, Any]]],
        *,
        interval: float = INTERVAL,
        connect: Callable[[KubernetesConfig], KubernetesTarget] | None = None,
        lock: Callable[[str, str], asyncio.Lock] | None = None,
    ) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.roots = roots
        self.services = services
        self.interval = interval
        self._connect = connect or (lambda config: KubernetesTarget(config, builder=None))
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._lock = lock or (
            lambda target, app: self._locks.setdefault((target, app), asyncio.Lock())
        )
        #: target name -> (its settings as JSON, the target): reconnects when they change.
        self._targets: dict[str, tuple[str, KubernetesTarget]] = {}
        #: (target, app) -> the version whose rollout failed (not retried until the alias moves).
        self._failed: dict[tuple[str, str], int] = {}
        #: (target, app) -> the last error reported (each said once, not every interval).
        self._reported: dict[tuple[str, str], str] = {}

    def _target(self, name: str, config: KubernetesConfig) -> KubernetesTarget:
        key = json.dumps(config.to_json(), sort_keys=True)
        known = self._targets.get(name)
        if known is None or known[0] != key:
            known = (key, self._connect(config))
            self._targets[name] = known
        return known[1]

    def _report(self, key: tuple[str, str], message: str) -> None:
        if self._reported.get(key) != message:
            self._reported[key] = message
            where = f"app {key[1]} on target {key[0]}" if key[1] else f"target {key[0]}"
            log.warning("%s follows a model alias: %s", where, message)

    async def check(self) -> list[str]:
        """Look once at every target; returns ``target/app`` of each app rolled."""
        from conveyor.store.targets import TargetRepository

        rolled: list[str] = []
        for row in await asyncio.to_thread(TargetRepository(self.registry).all):
            if row["kind"] != "kubernetes":
                continue
            name = str(row["name"])
            try:
                config = KubernetesConfig.from_json(row["config"])
                if config.artifact_root is None:
                    continue  # no registered model app runs there
                target = self._target(name, config)
                apps = await asyncio.to_thread(following, target)
            except ConveyorError as exc:  # unreachable: its apps keep what they serve
                self._report((name, ""), exc.message)
                continue
            self._reported.pop((name, ""), None)
            for deployment in apps:
                app = str(deployment["metadata"]["name"])
                if await self._due(name, deployment) and await self._roll(name, target, app):
                    rolled.append(f"{name}/{app}")
        return rolled

    async def _roll(self, name: str, target: KubernetesTarget, app: str) -> bool:
        """Roll ``app`` holding its lock, from its Deployment as it is then: a change may
        have come first (a set-env's variables are in its spec, a push may not follow)."""
        async with self._lock(name, app):
            try:
                live = await asyncio.to_thread(target.cluster.get, "Deployment", app)
            except ConveyorError as exc:
                self._report((name, app), exc.message)
                return False
            if live is None or not _follows(live):
                return False
            due = await self._due(name, live)
            return due is not None and await self._follow(name, target, live, *due)

    async def _due(self, name: str, live: dict[str, Any]) -> tuple[AppSpec, int, str] | None:
        """The spec to render, the version to roll onto and the image, when ``live`` serves
        another version than its alias names (None too when the alias cannot be read)."""
        from conveyor.repro.registered import resolve_version

        app = str(live["metadata"]["name"])
        notes = live["metadata"].get("annotations") or {}
        uri, served, key = str(notes.get(FOLLOW_ALIAS)), notes.get(_VERSION), (name, app)
        try:
            now = (await asyncio.to_thread(resolve_version, uri, self.registry)).version
            spec = AppSpec.from_json(app, json.loads(notes[APP_SPEC]))
            image = str(live["spec"]["template"]["spec"]["containers"][0]["image"])
        except (ConveyorError, ValueError, TypeError, LookupError) as exc:
            # The alias or model is gone, or the Deployment was edited by hand: it keeps
            # serving what it has.
            self._report(key, getattr(exc, "message", None) or repr(exc))
            return None
        self._reported.pop(key, None)
        if str(now) == served or self._failed.get(key) == now:
            return None
        return spec, now, image

    async def _follow(
        self,
        name: str,
        target: KubernetesTarget,
        live: dict[str, Any],
        spec: AppSpec,
        now: int,
        image: str,
    ) -> bool:
        app = str(live["metadata"]["name"])
        notes = live["metadata"].get("annotations") or {}
        uri, served, key = str(notes.get(FOLLOW_ALIAS)), notes.get(_VERSION), (name, app)
        replicas = (live.get("spec") or {}).get("replicas")
        if replicas is not None and spec.autoscaling is None:  # `scale --target` since the push
            spec = dataclasses.replace(spec, instances=int(replicas))
        moved = f"{uri} moved: version {served} -> {now}"

        def progress(line: str) -> None:
            log.info("%s on %s: %s", app, name, line)

        try:
            root = self.roots(target.config)
            blob = await asyncio.to_thread(
                publish_model, uri, self.registry, self.artifacts, root, progress
            )
            revision = await asyncio.to_thread(target.next_revision, app)
            services = await asyncio.to_thread(self.services)
            await target.push(
                spec,
                revision=revision,
                droplet={},
                progress=progress,
                services=services,
                lineage=model_lineage(spec, blob),
                image=image,
                model=blob,
            )
        except ConveyorError as exc:
            self._failed[key] = now
            log.warning("app %s on %s: version %s did not roll out: %s", app, name, now, exc)
            await _record(target, app, "AliasMoveFailed", f"{moved}: {exc.message}", warning=True)
            return False
        self._failed.pop(key, None)
        await _record(target, app, "AliasMoved", f"{moved} (revision {revision})")
        return True

    async def run(self) -> None:
        """Look every ``interval`` seconds until cancelled."""
        await look_every(self.interval, self.check, "following model aliases on targets")


async def _record(
    target: KubernetesTarget, app: str, reason: str, message: str, *, warning: bool = False
) -> None:
    """A Kubernetes Event on the app's Deployment (what `kubectl describe` lists)."""
    namespace = target.config.namespace
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{app}.{uuid.uuid4().hex[:16]}",
            "namespace": namespace,
            "labels": {**selector(app), "app.kubernetes.io/managed-by": "conveyor"},
        },
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": app,
            "namespace": namespace,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "conveyor"},
        "reportingComponent": "conveyor",
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
    try:
        await asyncio.to_thread(target.cluster.apply, event)
    except ConveyorError as exc:  # the roll itself is what matters; the log has both
        log.warning("could not record %s for app %s: %s", reason, app, exc.message)
