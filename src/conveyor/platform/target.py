"""The one small protocol every deployment target implements: where app instances run.

The controller keeps the desired state (apps, revisions, events) and asks a
target to make it so. A target runs a :class:`Release` — one revision of an
app as processes see it: a command, its variables and folder, its health
checks, memory and routes — as N instances, and reports what happens to them
as :class:`~.supervisor.Event` values to the sink given to :meth:`Target.watch`.
The local target (:mod:`.local`) is the supervisor and the route table on
this machine; a Kubernetes target renders the same release as a Deployment,
a Service and routes.

Example::

    target.watch(record_event)
    await target.deploy(release, 2, progress)   # rolling: the old revision drains once healthy
    [s.state for s in target.status("iris")]    # ['RUNNING', 'RUNNING']
    done = await target.launch(step)            # a one-off process (a task step)
    done.exit_code, done.lines[-1]
    await target.undeploy("iris")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conveyor.platform.health import HealthCheck
from conveyor.platform.logs import LogBuffer
from conveyor.platform.routes import Route
from conveyor.platform.split import Measure
from conveyor.platform.supervisor import EventSink

__all__ = ["InstanceStatus", "LaunchResult", "Release", "Target"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """One revision of one app, as every instance of it runs."""

    app: str
    revision: int
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health: HealthCheck = field(default_factory=HealthCheck)
    #: Failing takes an instance out of routing, without a restart.
    readiness: HealthCheck | None = None
    #: Largest resident memory of one instance, in bytes.
    memory: int | None = None
    #: Where requests for the app come in; ``()`` for a worker.
    routes: tuple[Route, ...] = ()
    #: What an isolated instance may see: folders bound back read-only (its droplet) ...
    read_only: tuple[Path, ...] = ()
    #: ... and writable (a binder's folder); everything else of the platform stays hidden.
    read_write: tuple[Path, ...] = ()
    #: False only for a process the platform trusts as itself (a task step records its run
    #: into the registry): it runs with the platform's own environment and files.
    isolated: bool = True


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as ``conveyor app`` shows it."""

    index: int
    revision: int
    #: An :class:`~.instances.InstanceState` value: STARTING, RUNNING, CRASHED, STOPPING, DOWN.
    state: str
    #: Whether requests are routed to it.
    ready: bool
    #: When (wall clock) it entered its state.
    since: float
    host: str
    port: int | None
    pid: int | None
    restarts: int
    #: Resident memory in bytes and CPU seconds, when asked and where the target can tell.
    memory: int | None = None
    cpu: float | None = None
    last_crash: Mapping[str, Any] | None = None
    #: Which isolation it got: ``namespaces+uid 3141592, memory cgroup v1 100 MiB``, "none" ...
    isolation: str | None = None


@dataclass(frozen=True)
class LaunchResult:
    """How a one-off process ended: its exit status and its last lines of output."""

    exit_code: int
    lines: list[str]
    #: Where it ran (a Job's pods), where the target can tell.
    places: tuple[str, ...] = ()
    #: Its whole output as far as the target keeps it (a Job's pod logs), where it can tell.
    output: tuple[str, ...] = ()


class Target(Protocol):
    """Runs releases as instances; every method is called on the platform's event loop."""

    def watch(self, sink: EventSink) -> None:
        """Send every instance event (started, ready, crashed, stopped ...) to ``sink``."""
        ...

    async def start(self) -> None:
        """Take over: stop whatever a platform that died left running."""
        ...

    async def close(self) -> None:
        """Stop every instance (what is desired stays recorded for the next start)."""
        ...

    def restore(self, release: Release, instances: int) -> None:
        """Bring an app back after a platform restart: routes, logs, instances (not awaited)."""
        ...

    async def deploy(self, release: Release, instances: int, progress: Progress) -> None:
        """Run ``instances`` of ``release``, rolling over the app's other revisions.

        The new instances start beside the old ones; once all are healthy the
        release's routes apply and the old ones drain and stop. If they never
        become healthy they are stopped, the old ones keep serving, and
        :class:`~.errors.DeployError` says why.
        """
        ...

    async def start_canary(
        self, release: Release, instances: int, progress: Progress, *, stable: int, weight: int
    ) -> None:
        """Run ``instances`` of ``release`` beside revision ``stable``, given ``weight`` %.

        Nothing of ``stable`` stops. If the new instances never become healthy
        they are stopped, every request goes to ``stable`` again, and
        :class:`~.errors.DeployError` says why.
        """
        ...

    def set_canary_weight(self, app: str, weight: int) -> None:
        """Send ``weight`` % of ``app``'s requests to its canary from now on."""
        ...

    def canary_window(self, app: str) -> dict[int, Measure]:
        """Requests, errors and p95 latency of each revision since the last call."""
        ...

    async def end_canary(self, release: Release) -> None:
        """Keep only ``release``'s instances (the others drain and stop) and its routes."""
        ...

    async def scale(self, release: Release, instances: int) -> None:
        """Start or stop instances of the running ``release`` (DeployError if new ones fail)."""
        ...

    async def stop(self, app: str) -> None:
        """Stop every instance of ``app``; its routes and logs stay."""
        ...

    async def undeploy(self, app: str) -> None:
        """Stop every instance of ``app`` and forget its routes and logs."""
        ...

    def status(self, app: str, *, usage: bool = False) -> list[InstanceStatus]:
        """The app's instances now, by index; with their memory and CPU if ``usage``."""
        ...

    def routes(self, app: str) -> list[Route]:
        """The routes that lead to ``app`` now."""
        ...

    def route_owner(self, route: Route) -> str | None:
        """Another app with a route sharing requests with ``route`` (:func:`~.routes.overlaps`)."""
        ...

    def logs(self, app: str) -> LogBuffer:
        """The app's recent output (the platform adds its own lines at index -1)."""
        ...

    async def launch(self, release: Release, *, index: int = 0) -> LaunchResult:
        """Run one process of ``release`` to its end (a task step); its output joins the logs.

        Cancelling the call stops the process (and what it started) before it returns.
        """
        ...
