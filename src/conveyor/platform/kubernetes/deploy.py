"""Applying to a cluster: all of a revision or none of it, then the rollout watched to its end.

:class:`Rollout` applies a revision's objects in order, server-side. Before
it does, it reads what the cluster holds for each of them; if any is refused,
or the Deployment never gets ready, it puts back what was there (and deletes
what was new), so the previous revision keeps serving, as locally. A failure
says why with the pods' events and their last log lines.

The rollout counts as done as ``kubectl rollout status`` counts it: the
Deployment's controller has seen this generation, every replica is updated
and available, and no old one is left.

    rollout = Rollout(cluster)
    await rollout.deploy(objects, progress)          # DeployError if it never gets ready
    result = await rollout.run_job(job, progress)    # a task step: exit code and last lines
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from conveyor.platform.errors import DeployError
from conveyor.platform.kubernetes.client import Cluster
from conveyor.platform.target import LaunchResult, Progress

__all__ = ["Rollout", "job_outcome", "reapplicable", "rollout_state"]

T = TypeVar("T")
#: Server-kept fields of a live object; the rest is what was applied and can be applied again.
_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
)
#: Lines of each failing pod's output a DeployError carries.
_LAST_LINES = 20
#: A finished step's log kept as its run's output: at most this many lines of each pod.
_OUTPUT_LINES = 10_000


def rollout_state(deployment: Mapping[str, Any]) -> tuple[str, str]:
    """Where a Deployment's rollout is: ``("done" | "waiting" | "failed", what it waits for)``."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return "waiting", "the Deployment controller to see the new revision"
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return "failed", str(condition.get("message") or "progress deadline exceeded")
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return "waiting", f"{updated} of {wanted} replicas updated"
    if current > updated:
        return "waiting", f"{current - updated} old replicas to stop"
    if available < updated:
        return "waiting", f"{available} of {updated} updated replicas available"
    return "done", f"{available} replicas available"


class Rollout:
    """Applies revisions and runs Jobs in one namespace; waits with an injected clock."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        poll: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.cluster = cluster
        self.poll = poll
        self.clock = clock
        self.sleep = sleep

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    # -- all or nothing -----------------------------------------------------------

    async def apply(
        self, objects: Sequence[Mapping[str, Any]], progress: Progress
    ) -> list[tuple[Mapping[str, Any], dict[str, Any] | None]]:
        """Apply every object in order; if one is refused, undo the others and raise.

        Returns each object with what the cluster held before (None: it is new),
        for :meth:`undo`.
        """
        done: list[tuple[Mapping[str, Any], dict[str, Any] | None]] = []
        try:
            for obj in objects:
                kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
                before = await self._io(self.cluster.get, kind, name)
                await self._io(self.cluster.apply, obj)
                done.append((obj, None if before is None else reapplicable(before)))
                progress(f"applied {kind} {name}")
        except BaseException:
            await self.undo(done, progress)
            raise
        return done

    async def undo(
        self,
        applied: Sequence[tuple[Mapping[str, Any], dict[str, Any] | None]],
        progress: Progress,
    ) -> None:
        """Put back what :meth:`apply` changed, last first: old copies again, new ones deleted."""
        for obj, before in reversed(applied):
            kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
            try:
                if before is None:
                    await self._io(self.cluster.delete, kind, name)
                    progress(f"deleted the new {kind} {name}")
                else:
                    await self._io(self.cluster.apply, before)
                    progress(f"restored {kind} {name}")
            except Exception as exc:  # keep undoing the others; say what is left
                progress(f"could not put back {kind} {name}: {exc}")

    # -- apps ---------------------------------------------------------------------

    async def deploy(
        self, objects: Sequence[Mapping[str, Any]], progress: Progress, *, timeout: float
    ) -> None:
        """Apply a revision and wait until its Deployment is rolled out, else put it all back."""
        await self.deploy_all([objects], progress, timeout=timeout)

    async def deploy_all(
        self,
        revisions: Sequence[Sequence[Mapping[str, Any]]],
        progress: Progress,
        *,
        timeout: float,
    ) -> None:
        """Deploy several apps' revisions one after the other (a stream's apps, sinks first).

        If one fails, every one deployed before it is put back too.
        """
        applied: list[tuple[Mapping[str, Any], dict[str, Any] | None]] = []
        try:
            for objects in revisions:
                deployment = next(o for o in objects if o["kind"] == "Deployment")
                applied.extend(await self.apply(objects, progress))
                name = str(deployment["metadata"]["name"])
                await self._await_rollout(name, progress, timeout=timeout)
        except BaseException:  # a DeployError, a refusal, a cancelled push: all put back
            await self.undo(applied, progress)
            raise

    async def _await_rollout(self, name: str, progress: Progress, *, timeout: float) -> None:
        deadline = self.clock() + timeout
        said = ""
        while True:
            live = await self._io(self.cluster.get, "Deployment", name) or {}
            state, detail = rollout_state(live)
            if state == "done":
                progress(f"rolled out: {detail}")
                return
            if detail != said:
                progress(f"waiting for {detail}")
                said = detail
            if state == "failed" or self.clock() >= deadline:
                why = detail if state == "failed" else f"not ready after {timeout:.0f} s: {detail}"
                raise await self._failure(name, live, why)
            await self.sleep(self.poll)

    async def _failure(self, name: str, live: Mapping[str, Any], why: str) -> DeployError:
        selector = ((live.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        lines = await self._evidence(name, selector)
        return DeployError(
            f"{name} did not roll out ({why}); the previous revision keeps serving",
            hint="\n".join(lines[-_LAST_LINES * 2 :]) or None,
            reason=why,
            lines=lines,
        )

    async def _evidence(self, name: str, selector: Mapping[str, str]) -> list[str]:
        """The pods' events and last log lines: what `kubectl describe` and `logs` would show."""
        lines: list[str] = []
        try:
            pods = await self._io(self.cluster.items, "Pod", selector)
            for event in await self._io(self.cluster.events, name):
                lines.append(_event_line(event))
            for pod in pods[:3]:
                pod_name = str(pod["metadata"]["name"])
                for event in await self._io(self.cluster.events, pod_name):
                    lines.append(_event_line(event))
                text = await self._io(self.cluster.logs, pod_name)
                lines.extend(f"{pod_name}: {line}" for line in text.splitlines()[-_LAST_LINES:])
        except Exception as exc:  # the failure itself matters more than its evidence
            lines.append(f"(could not read the pods' events and logs: {exc})")
        return list(dict.fromkeys(lines))  # an event may concern the app and its pod

    # -- task steps -----------------------------------------------------------------

    async def run_job(
        self, job: Mapping[str, Any], progress: Progress, *, timeout: float
    ) -> LaunchResult:
        """Apply a Job and wait for its end: exit 0 when it succeeded, 1 when it failed."""
        name = str(job["metadata"]["name"])
        await self._io(self.cluster.apply, job)
        progress(f"launched Job {name}")
        deadline = self.clock() + timeout
        while True:
            live = await self._io(self.cluster.get, "Job", name) or {}
            ended = job_outcome(live)
            if ended is not None or self.clock() >= deadline:
                pods = await self._job_pods(name)
                code = 1 if ended is None else _exit_code(pods, ended)
                output = await self._job_output(pods)
                lines = output[-_LAST_LINES:]
                if ended is None:
                    lines.append(f"the Job did not finish within {timeout:.0f} s")
                    await self._io(self.cluster.delete, "Job", name)
                places = tuple(str(p["metadata"]["name"]) for p in pods)
                return LaunchResult(code, lines, places=places, output=tuple(output))
            await self.sleep(self.poll)

    async def _job_pods(self, name: str) -> list[dict[str, Any]]:
        """The Job's pods (filtered here too: a selector is a request, not a promise)."""
        try:
            found = await self._io(self.cluster.items, "Pod", {"job-name": name})
        except Exception:
            return []
        return [p for p in found if (p["metadata"].get("labels") or {}).get("job-name") == name]

    async def _job_output(self, pods: list[dict[str, Any]]) -> list[str]:
        """The pods' log lines (the last ``_OUTPUT_LINES`` of each), read once."""
        lines: list[str] = []
        try:
            for pod in pods:
                name = str(pod["metadata"]["name"])
                text = await asyncio.to_thread(self.cluster.logs, name, lines=_OUTPUT_LINES)
                lines.extend(text.splitlines())
        except Exception as exc:
            lines.append(f"(could not read the Job's logs: {exc})")
        return lines


def _exit_code(pods: list[dict[str, Any]], outcome: int) -> int:
    """The step's own exit code, as its pod's container reports it; else the Job's 0 or 1."""
    if outcome == 0:
        return 0
    for pod in reversed(pods):
        for box in (pod.get("status") or {}).get("containerStatuses") or ():
            ended = (box.get("state") or {}).get("terminated") or {}
            if isinstance(ended.get("exitCode"), int) and ended["exitCode"] != 0:
                return int(ended["exitCode"])
    return outcome


def job_outcome(job: Mapping[str, Any]) -> int | None:
    """0 when a Job succeeded, 1 when it failed, None while it runs."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in {"Complete", "Failed"}:
            return 0 if condition["type"] == "Complete" else 1
    if int(status.get("succeeded") or 0) > 0:
        return 0
    if int(status.get("failed") or 0) > 0:
        return 1
    return None


def _event_line(event: Mapping[str, Any]) -> str:
    involved = (event.get("involvedObject") or {}).get("name", "?")
    return (
        f"{involved}: {event.get('type', '')} {event.get('reason', '')}: "
        f"{event.get('message', '')}".strip()
    )


def reapplicable(live: Mapping[str, Any]) -> dict[str, Any]:
    """A live object as it can be applied again: no status, no server-kept metadata."""
    copy = {k: v for k, v in live.items() if k != "status"}
    meta = {k: v for k, v in (live.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
    copy["metadata"] = meta
    return copy
