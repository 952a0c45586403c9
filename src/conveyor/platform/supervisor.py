"""The supervisor: runs instances as processes, health-checks them, restarts what crashes.

One asyncio task per instance drives its life::

    DOWN ─start→ STARTING ─healthy→ RUNNING ─exit/liveness/memory→ CRASHED ─backoff→ STARTING …
                    └──────────── stop → STOPPING (SIGTERM … SIGKILL) → DOWN

Time, process spawning and health probes are injected (:mod:`.clock`,
:mod:`.processes`, :mod:`.health`), so the whole schedule can be played on a
fake clock with fake processes. Everything that happens is reported as an
:class:`Event` to the ``events`` sink (a control plane records them; the route
table listens for ``ready``/``unready``).

Memory limits are enforced by polling the resident memory of the instance's
whole process group from /proc, not with RLIMIT_AS: address-space limits
count reserved virtual memory (BLAS thread arenas, onnxruntime, memory-mapped
model files reserve far more than they touch) so they fail healthy apps with
a MemoryError deep inside, apply per process rather than per group, and leave
the platform unable to say why the instance died. Polling sees the group,
and the breach becomes the crash's stated cause. An isolated instance
(:mod:`.isolation`) also has its limit enforced by the kernel — a memory
cgroup, else RLIMIT_DATA — so it cannot overshoot between two polls; the
spawner's handle then names that breach (``crash_reason``) as the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from conveyor.platform.backoff import CrashBackoff
from conveyor.platform.cfenv import cf_instance_environment
from conveyor.platform.clock import Clock, SystemClock, race_deadline
from conveyor.platform.errors import PlatformError, SpawnError
from conveyor.platform.health import HealthCheck, HealthProbe, NetworkProbe
from conveyor.platform.instances import InstanceState, transition
from conveyor.platform.logs import LogBuffer, LogFiles, Stream
from conveyor.platform.processes import ProcessHandle, Spawner, SpawnRequest, SubprocessSpawner

if TYPE_CHECKING:
    from conveyor.platform.isolation import Sandbox

__all__ = [
    "Event",
    "EventSink",
    "Instance",
    "InstanceSpec",
    "Supervisor",
    "free_port",
    "instance_key",
]

log = logging.getLogger("conveyor.platform.supervisor")

#: How many of an instance's last lines a crash event carries.
CRASH_LINES = 20


@dataclass(frozen=True)
class InstanceSpec:
    """How to run one app's instances (everything but the index)."""

    app: str
    command: tuple[str, ...]
    #: Which revision of the app these instances run (a rolling deploy runs two at once).
    revision: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health: HealthCheck = field(default_factory=HealthCheck)
    #: Readiness: failing takes the instance out of routing without a restart.
    readiness: HealthCheck | None = None
    #: Largest resident memory of the instance's process group, in bytes.
    memory_limit: int | None = None
    #: Seconds between SIGTERM and SIGKILL on stop.
    grace_period: float = 10.0
    #: Seconds between memory polls when a limit is set.
    memory_interval: float = 1.0
    #: What an isolated instance may see (its droplet, the folders it writes) and its
    #: kernel-enforced memory limit; None: the spawner's default (nothing but its own tmp).
    sandbox: Sandbox | None = None


@dataclass(frozen=True)
class Event:
    """Something that happened to an instance: started, running, crashed, stopped …"""

    kind: str
    app: str
    index: int
    at: float
    details: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 0

    @property
    def key(self) -> str:
        """The instance's name: ``app/index``, or ``app/revision/index`` for a revision."""
        return instance_key(self.app, self.index, self.revision)


EventSink = Callable[[Event], None]


@dataclass
class Instance:
    """One instance as the supervisor tracks it; callers read it, never write it."""

    spec: InstanceSpec
    index: int
    state: InstanceState = InstanceState.DOWN
    #: When (wall clock) it entered its current state.
    since: float = 0.0
    host: str = "127.0.0.1"
    port: int | None = None
    pid: int | None = None
    #: Whether the router may send it requests.
    ready: bool = False
    #: Restarts since the first start.
    restarts: int = 0
    #: Consecutive crashes (reset after running long enough).
    crashes: int = 0
    last_crash: Mapping[str, Any] | None = None
    #: Clock time of the latest spawn (how long it ran decides the crash-count reset).
    spawned_at: float = 0.0
    #: Which isolation its latest process got (as its started event says), e.g.
    #: ``namespaces+uid 3141592, memory cgroup v1 100 MiB``; None before the first start.
    isolation: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether its supervision ended (stopped, or given up on)."""
        return self._task is not None and self._task.done()

    @property
    def name(self) -> str:
        return instance_key(self.spec.app, self.index, self.spec.revision)


def instance_key(app: str, index: int, revision: int = 0) -> str:
    """``app/index``, or ``app/revision/index`` when instances of several revisions exist."""
    return f"{app}/{revision}/{index}" if revision else f"{app}/{index}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Supervisor:
    """Starts, watches, restarts and stops instances on one event loop."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        spawner: Spawner | None = None,
        probe: HealthProbe | None = None,
        backoff: CrashBackoff | None = None,
        events: EventSink | None = None,
        host: str = "127.0.0.1",
        port_allocator: Callable[[], int] | None = None,
        base_env: Mapping[str, str] | None = None,
        log_capacity: int = 10_000,
        log_files: LogFiles | None = None,
        startup_poll: float = 0.1,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self._spawner: Spawner = spawner or SubprocessSpawner()
        self._probe: HealthProbe = probe or NetworkProbe()
        self._backoff = backoff or CrashBackoff()
        self._sink = events
        self._host = host
        self._ports = port_allocator or (lambda: free_port(host))
        self._base_env = dict(base_env or {})
        self._log_capacity = log_capacity
        self.log_files = log_files
        self._startup_poll = startup_poll
        self._instances: dict[tuple[str, int, int], Instance] = {}
        self._logs: dict[str, LogBuffer] = {}

    # -- public surface -------------------------------------------------------

    def start(self, spec: InstanceSpec, index: int) -> Instance:
        """Start instance ``index`` of ``spec.app``; returns at once (state STARTING soon)."""
        key = (spec.app, spec.revision, index)
        current = self._instances.get(key)
        if current is not None and current.state is not InstanceState.DOWN:
            raise PlatformError(
                f"instance {current.name} is already {current.state.value}; "
                "stop it before starting it again"
            )
        instance = Instance(spec=spec, index=index, host=self._host, since=self.clock.wall())
        self._instances[key] = instance
        instance._task = asyncio.create_task(self._life(instance), name=instance.name)
        return instance

    async def stop(self, app: str, index: int, revision: int = 0) -> None:
        """Stop one instance (SIGTERM, then SIGKILL after its grace period) and wait for DOWN."""
        instance = self._instances.get((app, revision, index))
        if instance is None:
            raise PlatformError(
                f"there is no instance {instance_key(app, index, revision)} to stop"
            )
        instance._stop.set()
        if instance._task is not None:
            await instance._task

    async def stop_all(self) -> None:
        """Stop every instance, concurrently; then whoever follows a log is told it ended."""
        await asyncio.gather(*(self.stop(app, i, rev) for app, rev, i in list(self._instances)))
        for buffer in self._logs.values():
            buffer.close()

    def forget(self, app: str, index: int, revision: int = 0) -> None:
        """Drop a DOWN instance from the tracked set (after a scale-down or a deploy)."""
        instance = self._instances.get((app, revision, index))
        if instance is not None and instance.state is InstanceState.DOWN:
            del self._instances[(app, revision, index)]

    def instances(self, app: str | None = None) -> list[Instance]:
        """The tracked instances (of ``app``, if given), by app and index."""
        return [
            inst for key, inst in sorted(self._instances.items()) if app is None or key[0] == app
        ]

    def logs(self, app: str) -> LogBuffer:
        """The output of ``app``'s instances (created empty on first use)."""
        buffer = self._logs.get(app)
        if buffer is None:
            on_line = None if self.log_files is None else self.log_files.writer(app)
            buffer = self._logs[app] = LogBuffer(self._log_capacity, on_line=on_line)
        return buffer

    def forget_logs(self, app: str) -> None:
        """Drop a deleted app's buffered lines and close its log file."""
        buffer = self._logs.pop(app, None)
        if buffer is not None:
            buffer.close()
        if self.log_files is not None:
            self.log_files.close(app)

    # -- one instance's life --------------------------------------------------

    def _emit(self, instance: Instance, kind: str, **details: Any) -> None:
        event = Event(
            kind,
            instance.spec.app,
            instance.index,
            self.clock.wall(),
            MappingProxyType(details),
            instance.spec.revision,
        )
        if kind not in ("ready", "unready"):
            text = f"{kind}" + "".join(
                f" {k}={v}" for k, v in details.items() if k not in ("last_lines",)
            )
            self.logs(instance.spec.app).append(instance.index, "platform", text, at=event.at)
        if self._sink is not None:
            try:
                self._sink(event)
            except Exception:  # a broken listener must not take instances down with it
                log.exception("event sink failed on %s", event)

    def _move(self, instance: Instance, state: InstanceState) -> None:
        instance.state = transition(instance.state, state, where=instance.name)
        instance.since = self.clock.wall()

    def _set_ready(self, instance: Instance, ready: bool) -> None:
        if instance.ready != ready:
            instance.ready = ready
            self._emit(
                instance, "ready" if ready else "unready", host=instance.host, port=instance.port
            )

    async def _life(self, instance: Instance) -> None:
        try:
            while True:
                reason, status = await self._run_once(instance)
                if reason is None:  # stopped on purpose
                    return
                if not await self._after_crash(instance, reason, status):
                    return
                instance.restarts += 1
        except Exception:
            log.exception("supervising %s failed", instance.name)
            raise

    async def _after_crash(self, instance: Instance, reason: str, status: int | None) -> bool:
        """Record a crash and wait out the backoff; False if the instance was stopped."""
        spec, clock = instance.spec, self.clock
        ran_for = clock.now() - instance.spawned_at
        instance.crashes = self._backoff.count_after_crash(instance.crashes, ran_for)
        self._set_ready(instance, False)
        self._move(instance, InstanceState.CRASHED)
        instance.pid = None
        last = [ln.format() for ln in self.logs(spec.app).recent(CRASH_LINES, index=instance.index)]
        instance.last_crash = {"reason": reason, "exit_status": status, "last_lines": last}
        delay = self._backoff.delay(instance.crashes)
        gives_up = self._backoff.gives_up(instance.crashes)
        self._emit(
            instance,
            "crashed",
            reason=reason,
            exit_status=status,
            crashes=instance.crashes,
            restart_in=None if gives_up else delay,
            last_lines=last,
        )
        if gives_up:
            self._emit(instance, "gave-up", crashes=instance.crashes)
            await instance._stop.wait()
        elif delay > 0:
            await race_deadline(clock, instance._stop.wait(), delay)
        if instance._stop.is_set():
            self._move(instance, InstanceState.DOWN)
            self._emit(instance, "stopped")
            return False
        return True

    async def _run_once(self, instance: Instance) -> tuple[str | None, int | None]:
        """Spawn and watch one process; (None, status) if stopped, else (crash reason, status)."""
        spec = instance.spec
        if instance._stop.is_set():
            if instance.state is not InstanceState.DOWN:
                self._move(instance, InstanceState.DOWN)
            return None, None
        self._move(instance, InstanceState.STARTING)
        instance.port = self._ports()
        env = {
            **self._base_env,
            **spec.env,
            "PORT": str(instance.port),
            "CONVEYOR_INSTANCE_INDEX": str(instance.index),
            **cf_instance_environment(instance.index, instance.port),
        }
        buffer = self.logs(spec.app)

        def output(stream: Stream, text: str) -> None:
            buffer.append(instance.index, stream, text, at=self.clock.wall())

        instance.spawned_at = self.clock.now()
        try:
            handle = await self._spawner.spawn(
                SpawnRequest(spec.command, env, spec.cwd, output, spec.sandbox)
            )
        except SpawnError as exc:
            output("stderr", exc.message)
            return f"could not start: {exc.message}", None
        instance.pid = handle.pid
        instance.isolation = handle.describe_isolation()
        self._emit(
            instance,
            "restarted" if instance.restarts else "started",
            pid=handle.pid,
            port=instance.port,
            isolation=instance.isolation,
        )
        exited = asyncio.ensure_future(handle.wait())
        stop = asyncio.ensure_future(instance._stop.wait())
        watch = asyncio.ensure_future(self._watch(instance, handle))
        try:
            done, _ = await asyncio.wait({exited, stop, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        if exited in done:
            status = exited.result()
            return handle.crash_reason(status) or f"exited with status {status}", status
        if watch in done and not watch.cancelled() and watch.result() is not None:
            # Unhealthy or over its memory: CF kills the container outright.
            handle.signal_group(signal.SIGKILL)
            status = await exited
            reason = watch.result()
            assert reason is not None
            # The kernel may have stopped it first (its memory cgroup): that is the cause.
            return handle.crash_reason(status) or reason, status
        status = await self._terminate(instance, handle, exited)
        return None, status

    async def _terminate(
        self, instance: Instance, handle: ProcessHandle, exited: asyncio.Future[int]
    ) -> int:
        self._set_ready(instance, False)
        self._move(instance, InstanceState.STOPPING)
        self._emit(instance, "stopping", grace_period=instance.spec.grace_period)
        handle.signal_group(signal.SIGTERM)
        status = await race_deadline(self.clock, asyncio.shield(exited), instance.spec.grace_period)
        killed = status is None
        if killed:
            handle.signal_group(signal.SIGKILL)
            status = await exited
        assert status is not None
        instance.pid = None
        self._move(instance, InstanceState.DOWN)
        self._emit(instance, "stopped", exit_status=status, killed=killed)
        return status

    # -- health and memory ----------------------------------------------------

    async def _check(self, check: HealthCheck, instance: Instance, handle: ProcessHandle) -> bool:
        if check.type == "process":
            return handle.returncode is None
        assert instance.port is not None
        answer = await race_deadline(
            self.clock,
            self._probe(check, instance.host, instance.port),
            check.invocation_timeout,
        )
        return bool(answer)

    async def _watch(self, instance: Instance, handle: ProcessHandle) -> str | None:
        """Gate startup, then run liveness, readiness and memory; a crash reason if one fails."""
        spec, clock = instance.spec, self.clock
        health = spec.health
        deadline = clock.now() + health.timeout
        while not await self._check(health, instance, handle):
            remaining = deadline - clock.now()
            if remaining <= 0:
                self._emit(instance, "health-failed", check=health.type, phase="startup")
                return (
                    f"did not pass its {health.type} health check "
                    f"within {health.timeout:g} s of starting"
                )
            await clock.sleep(min(self._startup_poll, remaining))
        self._move(instance, InstanceState.RUNNING)
        self._emit(instance, "running", port=instance.port)
        loops = [asyncio.ensure_future(self._liveness(instance, handle))]
        if spec.readiness is None:
            self._set_ready(instance, True)
        else:
            loops.append(asyncio.ensure_future(self._readiness(instance, handle, spec.readiness)))
        if spec.memory_limit is not None:
            loops.append(asyncio.ensure_future(self._memory(instance, handle, spec.memory_limit)))
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _liveness(self, instance: Instance, handle: ProcessHandle) -> str:
        check = instance.spec.health
        failures = 0
        while True:
            await self.clock.sleep(check.interval)
            if await self._check(check, instance, handle):
                failures = 0
                continue
            failures += 1
            if failures >= check.failures:
                self._emit(instance, "health-failed", check=check.type, phase="liveness")
                return f"failed its {check.type} liveness check {failures} time(s) in a row"

    async def _readiness(
        self, instance: Instance, handle: ProcessHandle, check: HealthCheck
    ) -> str:
        failures = 0
        while True:
            if await self._check(check, instance, handle):
                failures = 0
                self._set_ready(instance, True)
            else:
                failures += 1
                if failures >= check.failures and instance.ready:
                    self._emit(instance, "health-failed", check=check.type, phase="readiness")
                    self._set_ready(instance, False)
            await self.clock.sleep(check.interval)

    async def _memory(self, instance: Instance, handle: ProcessHandle, limit: int) -> str:
        while True:
            used = handle.memory_bytes()
            if used is not None and used > limit:
                self._emit(instance, "memory-exceeded", limit=limit, used=used)
                return (
                    f"exceeded its memory limit of {_mib(limit)} (its processes used {_mib(used)})"
                )
            await self.clock.sleep(instance.spec.memory_interval)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"
