"""The local target: releases run as supervised processes on this machine, behind the router.

It is :class:`~.target.Target` over the :class:`~.supervisor.Supervisor` (processes,
health, restarts) and the :class:`~.routes.RouteTable` the router reads. A
rolling deploy starts the new instances beside the old ones; only when all
of them pass their health check are the old ones taken out of routing, given
``drain`` seconds — and, when the router's counts are given (``in_flight``),
until the requests they were answering are done, up to ``drain_limit`` — and
stopped.

A platform that was killed leaves its instances running with nobody reading
their output. Every process started is written down (pid and start time, in
the registry), and :meth:`LocalTarget.start` stops what the last platform
left (checking the start time, so a recycled pid is never touched): one copy
of everything, never two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.errors import DeployError
from conveyor.platform.health import HealthCheck
from conveyor.platform.instances import InstanceState
from conveyor.platform.isolation import IsolatedSpawner, Sandbox
from conveyor.platform.kinds.model import serves_model
from conveyor.platform.logs import LogBuffer, LogFiles, Stream
from conveyor.platform.processes import (
    Spawner,
    SpawnRequest,
    SubprocessSpawner,
    group_rss,
    start_ticks,
    stop_groups,
)
from conveyor.platform.routes import Route, RouteTable
from conveyor.platform.split import Measure, Split
from conveyor.platform.supervisor import Event, EventSink, Instance, InstanceSpec, Supervisor
from conveyor.platform.target import InstanceStatus, LaunchResult, Progress, Release
from conveyor.platform.warm import WarmSpawner, prefork_enabled

__all__ = ["LocalTarget", "ProcessBook"]

log = logging.getLogger("conveyor.platform.local")

#: Lines of a failed instance's output a failed deploy (or a launch) reports.
_LAST_LINES = 15


class ProcessBook(Protocol):
    """Where the processes a platform started are written down (the registry)."""

    def record_process(self, key: str, pid: int, start_ticks: int) -> None: ...

    def forget_process(self, key: str) -> None: ...

    def processes(self) -> list[tuple[str, int, int]]: ...


class LocalTarget:
    """Instances as processes of this machine; requests to them through the route table."""

    def __init__(
        self,
        processes: ProcessBook,
        *,
        log_dir: Path | None = None,
        table: RouteTable | None = None,
        supervisor: Supervisor | None = None,
        backoff: CrashBackoff | None = None,
        spawner: Spawner | None = None,
        drain: float = 0.5,
        base_env: dict[str, str] | None = None,
        in_flight: Callable[[str], int] | None = None,
        drain_limit: float = 30.0,
    ) -> None:
        self.book = processes
        self.table = table or RouteTable()
        self.backoff = backoff or CrashBackoff()
        self._spawner = spawner or SubprocessSpawner()
        #: Model apps' warm spares (see :mod:`.warm`); None with CONVEYOR_PREFORK=0.
        self.warm = (
            WarmSpawner(
                self._spawner,
                serves_model,
                record=processes.record_process,
                forget=processes.forget_process,
                sandboxed_tmp=isinstance(self._spawner, IsolatedSpawner),
            )
            if prefork_enabled()
            else None
        )
        self.supervisor = supervisor or Supervisor(
            events=self._on_event,
            backoff=self.backoff,
            base_env=base_env,
            log_files=None if log_dir is None else LogFiles(log_dir),
            spawner=self.warm or self._spawner,
        )
        self.drain = drain
        #: Requests an instance (by its route-table key) is answering, as the router counts.
        self.in_flight = in_flight
        #: Longest a drain waits for those requests to finish.
        self.drain_limit = drain_limit
        self._base_env = dict(base_env or {})
        self._sinks: list[EventSink] = []
        self._changed = asyncio.Event()

    # -- events -----------------------------------------------------------------

    def watch(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def _on_event(self, event: Event) -> None:
        self.table.apply(event)
        if event.kind in ("started", "restarted"):
            pid = event.details.get("pid")
            ticks = start_ticks(pid) if isinstance(pid, int) else None
            if pid is not None and ticks is not None:
                self.book.record_process(event.key, pid, ticks)
        elif event.kind in ("crashed", "stopped"):
            self.book.forget_process(event.key)
        for sink in self._sinks:
            sink(event)
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the platform's start and stop ----------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._reap_orphans)

    def _reap_orphans(self) -> None:
        leftovers = self.book.processes()
        for key, _pid, _ticks in leftovers:
            self.book.forget_process(key)
        stopped = stop_groups([(pid, ticks) for _key, pid, ticks in leftovers])
        if stopped:
            log.warning("stopped %d instance(s) left by a platform that died", stopped)
        if isinstance(self._spawner, IsolatedSpawner):
            # Their sandboxes' folders and cgroups: nobody removed them when they were killed.
            self._spawner.sweep()

    async def close(self) -> None:
        if self.warm is not None:
            await self.warm.close()
        await self.supervisor.stop_all()
        if self.supervisor.log_files is not None:
            self.supervisor.log_files.close()

    def restore(self, release: Release, instances: int) -> None:
        self.table.set_routes(release.app, list(release.routes))
        files = self.supervisor.log_files
        if files is not None:  # lines written before the restart, back in `conveyor logs`
            self.supervisor.logs(release.app).restore(files.tail(release.app, 1000))
        spec = _instance_spec(release)
        for index in range(instances):
            self.supervisor.start(spec, index)

    # -- deploy, scale, stop ---------------------------------------------------------

    async def deploy(self, release: Release, instances: int, progress: Progress) -> None:
        name = release.app
        spec = _instance_spec(release)
        old = [i for i in self.supervisor.instances(name) if i.spec.revision != release.revision]
        progress(f"Starting {instances} instance(s) of revision {release.revision}...")
        new = [self.supervisor.start(spec, index) for index in range(instances)]
        failure = await self._await_healthy(new, spec.health)
        if failure is not None:
            lines = self._last_lines(name)
            await self._retire(new, drain=False)
            kept = "; the previous revision keeps serving" if old else ""
            raise DeployError(
                f"revision {release.revision} of {name} did not become healthy: {failure}{kept}",
                hint="Its last lines:\n" + "\n".join(lines) if lines else None,
                reason=failure,
                lines=lines,
            )
        self.table.set_routes(name, list(release.routes))
        if old:
            progress(f"Draining {len(old)} instance(s) of the previous revision...")
            await self._retire(old)

    # -- canaries --------------------------------------------------------------------------

    async def start_canary(
        self, release: Release, instances: int, progress: Progress, *, stable: int, weight: int
    ) -> None:
        name = release.app
        # Split first: the canary's instances get their share from their first ready moment.
        self.table.set_split(name, Split(stable, release.revision, weight))
        progress(f"Starting {instances} canary instance(s) of revision {release.revision}...")
        spec = _instance_spec(release)
        new = [self.supervisor.start(spec, index) for index in range(instances)]
        failure = await self._await_healthy(new, spec.health)
        if failure is not None:
            lines = self._last_lines(name)
            await self._retire(new, drain=False)
            self.table.set_split(name, None)
            raise DeployError(
                f"canary revision {release.revision} of {name} did not become healthy: "
                f"{failure}; revision {stable} keeps serving",
                hint="Its last lines:\n" + "\n".join(lines) if lines else None,
                reason=failure,
                lines=lines,
            )

    def set_canary_weight(self, app: str, weight: int) -> None:
        split = self.table.split(app)
        if split is not None:
            split.weight = weight

    def canary_window(self, app: str) -> dict[int, Measure]:
        split = self.table.split(app)
        return {} if split is None else split.take()

    async def end_canary(self, release: Release) -> None:
        name = release.app
        others = [i for i in self.supervisor.instances(name) if i.spec.revision != release.revision]
        self.table.set_routes(name, list(release.routes))
        await self._retire(others)
        self.table.set_split(name, None)

    async def scale(self, release: Release, instances: int) -> None:
        name = release.app
        current = [
            i for i in self.supervisor.instances(name) if i.spec.revision == release.revision
        ]
        extra = [i for i in current if i.index >= instances]
        if extra:
            await self._retire(extra)
        spec = _instance_spec(release)
        have = {i.index for i in current if i.index < instances}
        started = [self.supervisor.start(spec, i) for i in range(instances) if i not in have]
        failure = await self._await_healthy(started, spec.health)
        if failure:
            raise DeployError(
                f"scaled {name} to {instances}, but new instances are not healthy: {failure}",
                reason=failure,
            )

    async def stop(self, app: str) -> None:
        if self.warm is not None:
            await self.warm.discard(app)
        await self._retire(self.supervisor.instances(app))

    async def undeploy(self, app: str) -> None:
        if self.warm is not None:
            await self.warm.discard(app)
        await self._retire(self.supervisor.instances(app))
        self.table.remove_app(app)
        self.supervisor.forget_logs(app)

    # -- what runs ----------------------------------------------------------------------

    def status(self, app: str, *, usage: bool = False) -> list[InstanceStatus]:
        return [
            InstanceStatus(
                index=inst.index,
                revision=inst.spec.revision,
                state=inst.state.value,
                ready=inst.ready,
                since=inst.since,
                host=inst.host,
                port=inst.port,
                pid=inst.pid,
                restarts=inst.restarts,
                # A walk over /proc per instance: only for who shows it.
                memory=group_rss(inst.pid) if usage and inst.pid is not None else None,
                cpu=_cpu_seconds(inst.pid) if usage else None,
                last_crash=dict(inst.last_crash) if inst.last_crash else None,
                isolation=inst.isolation,
            )
            for inst in self.supervisor.instances(app)
        ]

    def warm_spare(self, app: str, *, usage: bool = False) -> dict[str, Any] | None:
        """``app``'s warm spare (see :mod:`.warm`): its pid, whether its model is loaded and,
        with ``usage``, the memory it holds; None when it has none."""
        found = None if self.warm is None else self.warm.spare(app)
        if found is None:
            return None
        pid, ready = found
        return {"pid": pid, "ready": ready, "memory": group_rss(pid) if usage else None}

    def routes(self, app: str) -> list[Route]:
        return self.table.routes(app)

    def route_owner(self, route: Route) -> str | None:
        taken = self.table.overlapping(route)
        return None if taken is None else taken.app

    def logs(self, app: str) -> LogBuffer:
        return self.supervisor.logs(app)

    async def launch(self, release: Release, *, index: int = 0) -> LaunchResult:
        buffer = self.logs(release.app)
        # An unisolated process (a task step, which records its own run) starts from the
        # platform's environment, as the platform's user; everything else from the clean base.
        base = self._base_env if release.isolated else os.environ
        env = {
            **base,
            **release.env,
            "CONVEYOR_INSTANCE_INDEX": str(index),
        }
        lines: list[str] = []

        def output(stream: Stream, text: str) -> None:
            lines.append(text)
            del lines[:-_LAST_LINES]
            buffer.append(index, stream, text, at=time.time())

        if release.isolated:
            request = SpawnRequest(release.command, env, release.cwd, output, _sandbox(release))
            handle = await self._spawner.spawn(request)
        else:
            handle = await SubprocessSpawner().spawn(
                SpawnRequest(release.command, env, release.cwd, output)
            )
        # Written down like an instance, so a platform started after this one died stops
        # it: a restarted task never runs a step beside the step's previous process.
        key = f"{release.app}/launch/{handle.pid}"
        ticks = start_ticks(handle.pid)
        if ticks is not None:
            self.book.record_process(key, handle.pid, ticks)
        try:
            code = await asyncio.shield(handle.wait())
        except asyncio.CancelledError:
            # A stopped or timed-out step: its whole process group goes, not just the wait.
            handle.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(handle.wait()), self.drain + 5.0)
            except TimeoutError:
                handle.signal_group(signal.SIGKILL)
                await handle.wait()
            raise
        finally:
            if ticks is not None:
                self.book.forget_process(key)
        reason = handle.crash_reason(code)
        if reason is not None:
            lines.append(reason)
        return LaunchResult(code, lines[-_LAST_LINES:])

    # -- the machinery ------------------------------------------------------------------

    def _last_lines(self, name: str) -> list[str]:
        return [
            line.format()
            for line in self.supervisor.logs(name).recent()
            if line.stream != "platform"
        ][-_LAST_LINES:]

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
            await self._drained([i.name for i in instances])
        await asyncio.gather(
            *(self.supervisor.stop(i.spec.app, i.index, i.spec.revision) for i in instances)
        )
        for inst in instances:
            self.supervisor.forget(inst.spec.app, inst.index, inst.spec.revision)

    async def _drained(self, keys: list[str]) -> None:
        """Wait (up to ``drain_limit``) until the router has no request on these instances."""
        counted = self.in_flight
        if counted is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_limit
        while any(counted(key) for key in keys) and loop.time() < deadline:
            await asyncio.sleep(0.05)  # the router tells no one when a request ends: look


def _sandbox(release: Release) -> Sandbox:
    return Sandbox(
        app=release.app,
        read_only=release.read_only,
        read_write=release.read_write,
        memory_limit=release.memory,
    )


def _instance_spec(release: Release) -> InstanceSpec:
    return InstanceSpec(
        app=release.app,
        command=release.command,
        revision=release.revision,
        env=release.env,
        cwd=release.cwd,
        health=release.health,
        readiness=release.readiness,
        memory_limit=release.memory,
        sandbox=_sandbox(release),
    )


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")
