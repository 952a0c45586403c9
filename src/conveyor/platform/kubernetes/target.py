"""A Kubernetes target: pushes, scales, inspects and removes apps, runs steps and schedules.

It is the cluster's side of what :class:`~conveyor.platform.target.Target`
does locally, one revision at a time: the droplet becomes an image (through
the injected :data:`~conveyor.platform.kubernetes.ImageBuilder`), the app spec
becomes objects (:mod:`.render`, :mod:`.jobs`), and :class:`~.deploy.Rollout`
applies them all or none and waits for the rollout.

    target = KubernetesTarget(config, builder=build_image)   # connects on first use
    await target.push(spec, revision=3, droplet=droplet, progress=print)
    target.status("triage")      # one row per pod
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFoundError, UsageError
from conveyor.platform.kubernetes.changes import (
    app_events,
    kept_revisions,
    revision_of,
    rolled_back,
    variables,
    with_env,
    with_restart,
)
from conveyor.platform.kubernetes.client import Cluster, LogStream
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.deploy import Rollout, reapplicable
from conveyor.platform.kubernetes.jobs import render_cronjob, render_job
from conveyor.platform.kubernetes.render import (
    STREAM_LABEL,
    Workload,
    labels,
    render_app,
    selector,
)
from conveyor.platform.spec import AppSpec
from conveyor.platform.target import LaunchResult, Progress

if TYPE_CHECKING:
    from conveyor.repro.registered import ModelBlob

__all__ = [
    "APP_KINDS",
    "KIND_LABEL",
    "RUNTIME_KINDS",
    "TASK_ANNOTATION",
    "ImageBuilder",
    "KubernetesTarget",
    "RuntimeBuilder",
]

ImageBuilder = Callable[[Mapping[str, Any], Mapping[str, str]], str]
#: Builds (or finds) the runtime image, an image with this server's Conveyor; its pinned ref.
RuntimeBuilder = Callable[[], str]
#: What an app may own, removed with it.
APP_KINDS = (
    "HorizontalPodAutoscaler",
    "Ingress",
    "HTTPRoute",
    "Service",
    "PodDisruptionBudget",
    "Deployment",
    "Secret",
)
_MANAGED = {"app.kubernetes.io/managed-by": "conveyor"}
#: On an image: the app's kind (the builder puts a model app on the target's runtime image).
KIND_LABEL = "dev.conveyor.kind"
#: The kinds whose images are built on the runtime image (they run Conveyor): model apps
#: (``conveyor serve``) and ``python:`` task steps with files of their own.
RUNTIME_KINDS = frozenset({"model", "python-step"})
#: On a schedule's CronJob: the task it launches.
TASK_ANNOTATION = "conveyor.dev/task"


class KubernetesTarget:
    """One Kubernetes target; ``cluster`` is given in tests, else read from the kubeconfig."""

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        builder: ImageBuilder | None,
        cluster: Cluster | None = None,
        poll: float = 1.0,
        runtime: RuntimeBuilder | None = None,
    ) -> None:
        self.config = config
        self.builder = builder
        self.runtime = runtime
        self._cluster = cluster
        self.poll = poll

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster.connect(self.config)
        return self._cluster

    @property
    def rollout(self) -> Rollout:
        return Rollout(self.cluster, poll=self.poll)

    async def image(
        self, droplet: Mapping[str, Any], spec: AppSpec, revision: int, *, kind: str | None = None
    ) -> str:
        """The pinned image of a revision's droplet, built (or found) by the builder; ``kind``
        (default: the spec's) is the image's :data:`KIND_LABEL`, and one of
        :data:`RUNTIME_KINDS` builds it on the runtime image."""
        if self.builder is None:
            raise UsageError(
                "this platform has no image builder for Kubernetes targets",
                hint="Render with `conveyor k8s render --image APP=REF` and apply with your tools.",
            )
        tags = {
            **labels(spec.name, revision),
            "org.opencontainers.image.title": spec.name,
            "dev.conveyor.revision": str(revision),
            KIND_LABEL: kind or ("model" if spec.model is not None else (spec.kind or "command")),
        }
        return await asyncio.to_thread(self.builder, droplet, tags)

    async def runtime_image(self) -> str:
        """The image with Conveyor installed that model and stream apps and Conveyor-run task
        steps run on: the target's ``runtime_image``, else the one the platform builds."""
        if self.config.runtime_image is not None:
            return self.config.runtime_image
        if self.runtime is None:
            raise UsageError(
                "this platform builds no runtime image (an image with Conveyor installed)",
                hint="Give an image (--image) or set the target's --runtime-image.",
            )
        return await asyncio.to_thread(self.runtime)

    async def push(
        self,
        spec: AppSpec,
        *,
        revision: int,
        droplet: Mapping[str, Any],
        progress: Progress,
        services: Mapping[str, Mapping[str, Any]] | None = None,
        lineage: Mapping[str, str] | None = None,
        image: str | None = None,
        model: ModelBlob | None = None,
    ) -> list[dict[str, Any]]:
        """Build the image, apply the revision and wait for its rollout; the objects applied.

        What the target cannot express is refused before the image is built.
        ``model`` is the registered model a model app serves, already in the artifact root.
        """
        bound = {s: dict((services or {}).get(s, {})) for s in spec.services}
        marks = dict(lineage or {})
        probe = Workload(spec, revision, image or "unbuilt", bound, marks, model)
        render_app(probe, self.config)  # refuses before anything is built or applied
        if image is None:
            progress("building the image")
            image = await self.image(droplet, spec, revision)
            progress(f"image {image}")
        work = Workload(spec, revision, image, bound, marks, model)
        return await self.deploy([work], progress)

    async def deploy(self, works: list[Workload], progress: Progress) -> list[dict[str, Any]]:
        """Apply several apps (all rendered, and refused, first), rolling each out in order.

        If one never gets ready, every one applied before it is put back too.
        """
        revisions = [render_app(work, self.config) for work in works]
        timeout = max(_rollout_timeout(objects) for objects in revisions)
        await self.rollout.deploy_all(revisions, progress, timeout=timeout)
        return [o for objects in revisions for o in objects]

    def next_revision(self, app: str) -> int:
        """The revision a push of ``app`` makes: the cluster keeps the state (a label)."""
        return revision_of(self.cluster.get("Deployment", app) or {}) + 1

    async def scale(self, app: str, instances: int) -> None:
        if await asyncio.to_thread(self.cluster.get, "Deployment", app) is None:
            raise NotFoundError(f"there is no app {app!r} in namespace {self.config.namespace!r}")
        await asyncio.to_thread(self.cluster.scale, "Deployment", app, instances)

    async def undeploy(self, app: str) -> list[str]:
        """Delete every object of the app; the kinds that were there."""
        gone = []
        for kind in APP_KINDS:
            name = f"{app}-services" if kind == "Secret" else app
            if await asyncio.to_thread(self.cluster.delete, kind, name):
                gone.append(kind)
        if not gone:
            raise NotFoundError(f"there is no app {app!r} in namespace {self.config.namespace!r}")
        return gone

    def apps(self, stream: str | None = None) -> list[dict[str, Any]]:
        """The Deployments Conveyor manages here (or a stream's): name, revision, replicas
        wanted and ready."""
        wanted = {**_MANAGED, **({STREAM_LABEL: stream} if stream else {})}
        rows = []
        for item in self.cluster.items("Deployment", wanted):
            meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
            marks = meta.get("labels") or {}
            if any(marks.get(k) != v for k, v in wanted.items()):
                continue  # the selector, checked here too
            rows.append(
                {
                    "name": meta["name"],
                    "revision": int((meta.get("labels") or {}).get("app.kubernetes.io/version", 0)),
                    "instances": int(spec.get("replicas", 0)),
                    "ready": int(status.get("readyReplicas") or 0),
                }
            )
        return rows

    # -- changes to a running app: a new revision (or a new template), rolled out --------

    def _live(self, app: str) -> dict[str, Any]:
        live = self.cluster.get("Deployment", app)
        if live is None:
            raise NotFoundError(f"there is no app {app!r} in namespace {self.config.namespace!r}")
        return live

    async def _roll(self, deployment: dict[str, Any], progress: Progress) -> None:
        """Apply a changed Deployment and watch its rollout; a failure puts the old one back."""
        app = str(deployment["metadata"]["name"])
        if await asyncio.to_thread(self.cluster.get, "HorizontalPodAutoscaler", app):
            deployment["spec"].pop("replicas", None)  # the autoscaler owns them
        await self.rollout.deploy([deployment], progress, timeout=_rollout_timeout([deployment]))

    async def set_env(
        self, app: str, values: Mapping[str, str], unset: list[str], progress: Progress
    ) -> int:
        """A new revision with the variables changed (same image), rolled out; its number."""
        live = await asyncio.to_thread(self._live, app)
        revision = revision_of(live) + 1
        await self._roll(with_env(live, values, unset, revision=revision), progress)
        return revision

    async def restart(self, app: str, progress: Progress) -> int:
        """Replace every pod (same revision), rolling; the revision running."""
        live = await asyncio.to_thread(self._live, app)
        await self._roll(with_restart(live, datetime.now(UTC)), progress)
        return revision_of(live)

    def variables(self, app: str) -> dict[str, str]:
        """The app's own variables on the cluster now (none when it is not there)."""
        live = self.cluster.get("Deployment", app) or {}
        return variables((live.get("spec") or {}).get("template") or {})

    def revision(self, app: str) -> int:
        """The revision the app's Deployment runs."""
        return revision_of(self._live(app))

    def revisions(self, app: str) -> dict[int, dict[str, Any]]:
        """The pod templates of the revisions the cluster keeps (its ReplicaSets), newest first."""
        self._live(app)
        return kept_revisions(self._owned("ReplicaSet", app), app)

    def _owned(self, kind: str, app: str) -> list[dict[str, Any]]:
        """The app's objects of ``kind`` (filtered here too: a selector is a request)."""
        wanted = selector(app)
        return [
            item
            for item in self.cluster.items(kind, wanted)
            if wanted.items() <= ((item.get("metadata") or {}).get("labels") or {}).items()
        ]

    async def rollback(self, app: str, to: int | None, progress: Progress) -> tuple[int, int]:
        """Run a kept revision's pod template again as a new revision: (new, the one run)."""
        live = await asyncio.to_thread(self._live, app)
        current = revision_of(live)
        kept = await asyncio.to_thread(self.revisions, app)
        older = [n for n in kept if n < current]
        if to is None and not older:
            raise NotFoundError(f"app {app!r} has no revision before {current} on the cluster")
        chosen = older[0] if to is None else to
        if chosen == current:
            raise UsageError(f"app {app!r} runs revision {current} already")
        if chosen not in kept:
            listed = ", ".join(map(str, kept)) or "none"
            raise NotFoundError(
                f"the cluster keeps no revision {chosen} of app {app!r} (kept: {listed})",
                hint="Its ReplicaSets are the history (revisionHistoryLimit 10).",
            )
        revision = current + 1
        await self._roll(rolled_back(live, kept[chosen], to=chosen, revision=revision), progress)
        return revision, chosen

    def events(self, app: str) -> list[dict[str, Any]]:
        """The app's events (its objects, ReplicaSets and their pods), oldest first."""
        self._live(app)
        owned = [
            str(item["metadata"]["name"])
            for kind in ("ReplicaSet", "Pod")
            for item in self._owned(kind, app)
        ]
        return app_events(self.cluster.events(), app, owned)

    def status(self, app: str) -> list[dict[str, Any]]:
        """One row per pod of the app: name, phase, ready, restarts, revision."""
        rows = []
        for pod in self.cluster.items("Pod", selector(app)):
            meta, status = pod["metadata"], pod.get("status") or {}
            containers = status.get("containerStatuses") or [{}]
            rows.append(
                {
                    "pod": meta["name"],
                    "revision": (meta.get("labels") or {}).get("app.kubernetes.io/version"),
                    "phase": status.get("phase", "Pending"),
                    "ready": all(c.get("ready", False) for c in containers),
                    "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
                }
            )
        return rows

    def logs(self, app: str, *, lines: int = 100) -> list[str]:
        """The last ``lines`` of every pod of the app, each line prefixed by its pod."""
        out: list[str] = []
        for pod in self.cluster.items("Pod", selector(app)):
            name = str(pod["metadata"]["name"])
            text = self.cluster.logs(name, lines=lines)
            out.extend(f"{name}: {line}" for line in text.splitlines())
        return out

    async def follow(self, app: str, *, lines: int = 100) -> AsyncIterator[tuple[str, str]]:
        """``(pod, line)`` from every pod of the app as they come, until every log ends.

        Each log is read in a thread of its own; leaving the loop closes them all.
        """
        pods = await asyncio.to_thread(self.cluster.items, "Pod", selector(app))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        streams: list[LogStream] = []

        def put(item: tuple[str, str] | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump(pod: str, stream: LogStream) -> None:
            try:
                for line in stream:
                    put((pod, line))
            except Exception as exc:
                put((pod, f"(its log ended: {exc})"))
            finally:
                put(None)

        try:
            for item in pods:
                pod = str(item["metadata"]["name"])
                stream = await asyncio.to_thread(self.cluster.follow, pod, lines=lines)
                streams.append(stream)
                threading.Thread(target=pump, args=(pod, stream), daemon=True).start()
            running = len(streams)
            while running:
                got = await queue.get()
                if got is None:
                    running -= 1
                else:
                    yield got
        finally:
            for stream in streams:
                stream.close()

    async def launch(
        self,
        spec: AppSpec,
        *,
        name: str,
        revision: int,
        droplet: Mapping[str, Any],
        command: list[str] | None,
        progress: Progress,
        timeout: float,
        image: str | None = None,
    ) -> LaunchResult:
        """Run one step as a Job to its end: its exit code (0 or 1) and last lines."""
        image = image or await self.image(droplet, spec, revision)
        job = render_job(Workload(spec, revision, image), self.config, name=name, command=command)
        return await self.rollout.run_job(job, progress, timeout=timeout)

    async def schedule(
        self,
        spec: AppSpec,
        *,
        name: str,
        cron: str,
        revision: int,
        droplet: Mapping[str, Any],
        command: list[str] | None,
        paused: bool = False,
        time_zone: str | None = None,
        image: str | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Apply a schedule (of ``task``) as a CronJob, suspended while paused; the object."""
        work = Workload(spec, revision, image or "unbuilt")
        cronjob = render_cronjob(
            work, self.config, name=name, cron=cron, paused=paused, time_zone=time_zone
        )  # refuses a bad expression before the image is built
        work = Workload(spec, revision, image or await self.image(droplet, spec, revision))
        cronjob = render_cronjob(
            work,
            self.config,
            name=name,
            cron=cron,
            paused=paused,
            time_zone=time_zone,
            command=command,
        )
        if task is not None:
            cronjob["metadata"]["annotations"][TASK_ANNOTATION] = task
        await asyncio.to_thread(self.cluster.apply, cronjob)
        return cronjob

    def schedules(self) -> list[dict[str, Any]]:
        """The CronJobs Conveyor manages here: name, task, cron, paused, last fired."""
        rows = []
        for item in self.cluster.items("CronJob", _MANAGED):
            meta, spec = item["metadata"], item.get("spec") or {}
            if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "conveyor":
                continue
            rows.append(
                {
                    "name": meta["name"],
                    "task": (meta.get("annotations") or {}).get(TASK_ANNOTATION),
                    "cron": spec.get("schedule"),
                    "time_zone": spec.get("timeZone"),
                    "paused": bool(spec.get("suspend")),
                    "last_fired": (item.get("status") or {}).get("lastScheduleTime"),
                }
            )
        return rows

    def suspend(self, name: str, paused: bool) -> dict[str, Any]:
        """Pause (``suspend: true``) or resume a schedule: its CronJob applied again."""
        live = self.cluster.get("CronJob", name)
        if live is None:
            raise NotFoundError(
                f"there is no schedule {name!r} in namespace {self.config.namespace!r}"
            )
        again = reapplicable(live)
        again["spec"] = {**again.get("spec", {}), "suspend": paused}
        return self.cluster.apply(again)

    def unschedule(self, name: str) -> None:
        if not self.cluster.delete("CronJob", name):
            raise NotFoundError(
                f"there is no schedule {name!r} in namespace {self.config.namespace!r}"
            )


def _rollout_timeout(objects: list[dict[str, Any]]) -> float:
    """The Deployment's own progress deadline, and a little more for the controller to say so."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    return float(math.ceil(deployment["spec"].get("progressDeadlineSeconds", 600) * 1.5))
