"""Warm starts for model apps: one spare instance per app, started ahead, claimed on demand.

A model app's instance spends seconds importing scikit-learn (or onnxruntime …)
and loading its model before it can listen. :class:`WarmSpawner` wraps the
platform's spawner: after it starts a model app's instance it starts one more
process the same way — same spawner, sandbox, uid, memory limit, cwd and
environment — in which ``conveyor serve`` loads the model and then waits
(:mod:`conveyor.serving.warm`). The next start of an instance of that app
(scale-out, a scale from zero, a crash restart) claims the spare: the platform
writes the instance's port and index to the spare's FIFO, the spare listens,
and its handle is returned as the new instance's. A new spare is then started
behind it. Since a spare *is* an instance process started early, everything
the supervisor does to instances (health checks, memory polls, stop, crash
backoff, log capture) applies unchanged, and isolation is exactly a cold
instance's.

Only a ready spare (its model loaded) whose command, folder, sandbox and
environment match the start — all but the instance's own variables — is
claimed; otherwise the start is cold, as without this module. A spare that
dies before it is claimed is not replaced until the next cold start (a model
that cannot load does not crash-loop in the background). ``CONVEYOR_PREFORK=0``
turns warm starts off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.platform.errors import SpawnError
from conveyor.platform.logs import Stream
from conveyor.platform.processes import (
    OutputSink,
    ProcessHandle,
    Spawner,
    SpawnRequest,
    start_ticks,
)
from conveyor.serving.warm import FIFO_NAME, INSTANCE_VARIABLES, READY_LINE, SPARE_ENV

if TYPE_CHECKING:
    from conveyor.platform.isolation import Sandbox

__all__ = ["WarmSpawner", "prefork_enabled"]

log = logging.getLogger("conveyor.platform.warm")

#: Lines of a spare's output kept until it is claimed (then replayed to its instance's log).
_KEPT_LINES = 200
#: Longest a start waits for a spare still loading its model before it starts cold.
_READY_WAIT = 10.0
#: Seconds a spare gets to stop on SIGTERM before SIGKILL.
_STOP_GRACE = 5.0


def prefork_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether warm starts are on: unless ``CONVEYOR_PREFORK`` is 0/false/off/no."""
    value = (os.environ if environ is None else environ).get("CONVEYOR_PREFORK", "1")
    return value.strip().lower() not in ("0", "false", "off", "no")


def _key(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None, sandbox: Sandbox | None
) -> tuple[Any, ...]:
    """What a spare must share with a start to stand in for it."""
    shared = sorted((k, v) for k, v in env.items() if k not in INSTANCE_VARIABLES)
    return (tuple(argv), tuple(shared), cwd, sandbox)


@dataclass(eq=False)
class _Spare:
    app: str
    key: tuple[Any, ...]
    #: The folder its FIFO is in, as the platform sees it (None: not known yet).
    folder: Path | None = None
    handle: ProcessHandle | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    target: OutputSink | None = None
    lines: list[tuple[Stream, str]] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = None
    own_folder: Path | None = None

    def deliver(self, stream: Stream, text: str) -> None:
        if self.target is not None:
            self.target(stream, text)
        elif stream == "stdout" and text == READY_LINE:
            self.ready.set()
        else:
            self.lines.append((stream, text))
            del self.lines[:-_KEPT_LINES]


class WarmSpawner:
    """A :class:`Spawner` that keeps one ready spare per warm-startable app (see module doc).

    ``eligible(argv)`` says which commands can wait as a spare (``conveyor serve``'s);
    ``record``/``forget`` write spares' processes down so a restarted platform stops
    what a killed one left (the same book as instances).
    """

    def __init__(
        self,
        inner: Spawner,
        eligible: Callable[[Sequence[str]], bool],
        *,
        record: Callable[[str, int, int], None] | None = None,
        forget: Callable[[str], None] | None = None,
        sandboxed_tmp: bool = False,
    ) -> None:
        self._inner = inner
        self._eligible = eligible
        self._record = record
        self._forget = forget
        #: Whether the inner spawner gives each process its own TMPDIR (and ``tmp_folder``).
        self._sandboxed_tmp = sandboxed_tmp
        self._spares: dict[str, _Spare] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def inner(self) -> Spawner:
        return self._inner

    async def spawn(self, request: SpawnRequest) -> ProcessHandle:
        argv, env, cwd, sandbox = request.argv, request.env, request.cwd, request.sandbox
        if self._closed or not self._eligible(argv):
            return await self._inner.spawn(request)
        app = sandbox.app if sandbox is not None else env.get("CONVEYOR_APP", "app")
        key = _key(argv, env, cwd, sandbox)
        spare = self._spares.get(app)
        if spare is not None and spare.key != key:  # another revision's: not coming back
            await self._discard(spare)
            spare = None
        if spare is not None and not spare.ready.is_set():
            await _ready_or_gone(spare)
        if spare is not None and spare.ready.is_set():
            handle = await self._claim(spare, env, request.output)
            if handle is not None:
                self._refill(app, key, argv, env, cwd, sandbox)
                return handle
        handle = await self._inner.spawn(request)
        if app not in self._spares:
            self._refill(app, key, argv, env, cwd, sandbox)
        return handle

    def spare(self, app: str) -> tuple[int, bool] | None:
        """``app``'s spare: its pid and whether it has loaded its model (None: it has none)."""
        spare = self._spares.get(app)
        if spare is None or spare.handle is None or spare.handle.returncode is not None:
            return None
        return spare.handle.pid, spare.ready.is_set()

    async def discard(self, app: str) -> None:
        """Stop ``app``'s spare (the app was stopped or deleted)."""
        spare = self._spares.get(app)
        if spare is not None:
            await self._discard(spare)

    async def close(self) -> None:
        """Stop every spare and start no more (the platform is going down)."""
        self._closed = True
        for task in list(self._refills):
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        await asyncio.gather(*(self._discard(s) for s in list(self._spares.values())))

    # -- spares -------------------------------------------------------------------

    def _refill(
        self,
        app: str,
        key: tuple[Any, ...],
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        sandbox: Sandbox | None,
    ) -> None:
        spare = _Spare(app, key)
        self._spares[app] = spare
        task = asyncio.create_task(self._start(spare, argv, env, cwd, sandbox))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _start(
        self,
        spare: _Spare,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        sandbox: Sandbox | None,
    ) -> None:
        spare_env = {k: v for k, v in env.items() if k not in INSTANCE_VARIABLES}
        spare_env["PORT"] = "0"
        if self._sandboxed_tmp:
            spare_env[SPARE_ENV] = ""  # its own $TMPDIR, which the platform sees as tmp_folder
        else:
            spare.own_folder = Path(tempfile.mkdtemp(prefix="conveyor-warm-"))
            spare.folder = spare.own_folder
            spare_env[SPARE_ENV] = str(spare.own_folder)
        try:
            handle = await self._inner.spawn(
                SpawnRequest(argv, spare_env, cwd, spare.deliver, sandbox)
            )
        except SpawnError as exc:
            log.warning("could not start a warm spare of %s: %s", spare.app, exc.message)
            self._drop(spare)
            return
        spare.handle = handle
        if self._sandboxed_tmp:
            spare.folder = getattr(handle, "tmp_folder", None)
        if self._spares.get(spare.app) is not spare or self._closed:
            await self._stop(handle)
            self._drop(spare)
            return
        if self._record is not None:
            ticks = start_ticks(handle.pid)
            if ticks is not None:
                self._record(_book_key(spare.app), handle.pid, ticks)
        spare.watcher = asyncio.create_task(self._watch(spare, handle))

    async def _watch(self, spare: _Spare, handle: ProcessHandle) -> None:
        """A spare that exits before it is claimed: say why in the platform's log, drop it."""
        status = await handle.wait()
        if self._spares.get(spare.app) is spare:
            last = "; ".join(text for _, text in spare.lines[-5:])
            log.warning(
                "the warm spare of %s exited with status %s before it was needed: %s",
                spare.app,
                status,
                last or "no output",
            )
        self._drop(spare)

    async def _claim(
        self, spare: _Spare, env: Mapping[str, str], output: OutputSink
    ) -> ProcessHandle | None:
        """Hand ``spare`` the instance's variables; its handle, or None if it cannot take them."""
        handle = spare.handle
        if self._spares.get(spare.app) is not spare:  # another start claimed it meanwhile
            return None
        if handle is None or handle.returncode is not None or spare.folder is None:
            return None
        if spare.watcher is not None:
            spare.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spare.watcher
        message = {k: v for k, v in env.items() if k in INSTANCE_VARIABLES}
        try:
            _write_fifo(spare.folder / FIFO_NAME, json.dumps(message).encode())
        except OSError as exc:
            log.warning("could not hand an instance to the warm spare of %s: %s", spare.app, exc)
            self._drop(spare)
            await self._stop(handle)
            return None
        self._drop(spare)
        for stream, text in spare.lines:
            output(stream, text)
        spare.target = output
        return handle

    async def _discard(self, spare: _Spare) -> None:
        self._drop(spare)
        if spare.watcher is not None:
            spare.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spare.watcher
        if spare.handle is not None:
            await self._stop(spare.handle)

    async def _stop(self, handle: ProcessHandle) -> None:
        handle.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(handle.wait()), _STOP_GRACE)
        except TimeoutError:
            handle.signal_group(signal.SIGKILL)
            await handle.wait()

    def _drop(self, spare: _Spare) -> None:
        """No longer the app's spare: off the book, its own folder removed."""
        if self._spares.get(spare.app) is spare:
            del self._spares[spare.app]
            if self._forget is not None:
                self._forget(_book_key(spare.app))
        if spare.own_folder is not None:
            import shutil

            shutil.rmtree(spare.own_folder, ignore_errors=True)
            spare.own_folder = None


async def _ready_or_gone(spare: _Spare) -> None:
    """Wait a little for a spare still loading: it is ahead of a cold start."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(spare.ready.wait())]
    if spare.watcher is not None:
        waits.append(asyncio.ensure_future(asyncio.shield(spare.watcher)))
    try:
        await asyncio.wait(waits, timeout=_READY_WAIT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _book_key(app: str) -> str:
    return f"{app}/warm-spare"


def _write_fifo(path: Path, data: bytes) -> None:
    """Write ``data`` to the FIFO at ``path``: never follow a link, never write to a non-FIFO.

    The spare's folder is the app's; it may have put anything there.
    """
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not the spare's FIFO")
        os.set_blocking(fd, True)
        os.write(fd, data)
    finally:
        os.close(fd)
