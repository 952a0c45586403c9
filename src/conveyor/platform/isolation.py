"""Isolation of pushed apps from the platform and from each other.

An instance gets a clean environment (:mod:`.instance_env`) and runs inside
new mount, pid and IPC namespaces (:mod:`._sandbox_init`) where
``$CONVEYOR_HOME``, the artifact store and the registry are hidden under
empty tmpfs folders (:mod:`.sandbox_paths`); only what the instance needs is
bound back — its droplet read-only, the folders it is given read-write — with
a private ``/tmp`` and a ``/proc`` that shows its own processes only. The
mechanism depends on who runs the platform:

- **root** (CI, a server): no user namespace is needed; the app runs as its
  own unprivileged uid/gid (:func:`app_uid`, derived from the app's name), so
  a path the mounts forgot is still guarded by file permissions;
- **an unprivileged user** (a laptop): an unprivileged user namespace, in
  which the app keeps no capabilities (it cannot unmount what hides the
  platform's files).

Memory limits are the kernel's (:mod:`.memlimit`). Where no mechanism works,
starting an instance is refused unless the operator set ``CONVEYOR_ISOLATION=none``.

Example (what the supervisor does per instance)::

    spawner = IsolatedSpawner(settings)
    sandbox = Sandbox(app="scorer", read_only=(venv, source), memory_limit=100 << 20)
    handle = await spawner.spawn(SpawnRequest(argv, env, source, sink, sandbox))
    handle.isolation.describe()   # 'namespaces+uid 3141592, memory cgroup v1 100 MiB'
    status = await handle.wait(); handle.crash_reason(status)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.config import Settings
from conveyor.platform import _sandbox_init
from conveyor.platform.errors import SpawnError
from conveyor.platform.instance_env import SANDBOX_TMP, platform_env, without_platform_secrets
from conveyor.platform.logs import Stream
from conveyor.platform.memlimit import MemoryCage, cage
from conveyor.platform.memlimit import sweep as sweep_cgroups
from conveyor.platform.processes import SpawnRequest, SubprocessSpawner, group_rss
from conveyor.platform.sandbox_paths import hidden_paths, mounts, outermost, user_private

__all__ = [
    "IsolatedProcess",
    "IsolatedSpawner",
    "Isolation",
    "IsolationUnavailable",
    "Sandbox",
    "app_uid",
]

#: Where per-app uids start and how many there are (above what distributions and
#: the usual subordinate-id ranges hand out; no /etc/passwd entry is needed).
UID_BASE = 3_000_000
UID_RANGE = 1 << 20
_OPT_OUT = (
    "Set CONVEYOR_ISOLATION=none to run instances without isolation "
    "(an app can then read the platform's files, including its token)."
)


class IsolationUnavailable(SpawnError):
    """No isolation mechanism works here and the operator has not opted out."""


@dataclass(frozen=True)
class Sandbox:
    """What one app's instances may see and use."""

    app: str
    #: Paths bound back read-only: the droplet's venv and source, a model file …
    read_only: tuple[Path, ...] = ()
    #: Paths bound back writable: a binder's log folder, a data folder …
    read_write: tuple[Path, ...] = ()
    #: Bytes of memory the kernel lets the instance use (None: no limit).
    memory_limit: int | None = None


@dataclass(frozen=True)
class Isolation:
    """Which isolation an instance got, for ``conveyor app`` to show."""

    #: "namespaces+uid", "user namespace" or "none".
    mechanism: str
    uid: int | None = None
    #: How its memory limit is enforced, e.g. "cgroup v1 100 MiB" (None: no limit).
    memory: str | None = None
    opted_out: bool = False

    def describe(self) -> str:
        """One line: ``namespaces+uid 3141592, memory cgroup v1 100 MiB``."""
        text = self.mechanism
        if self.uid is not None:
            text += f" {self.uid}"
        if self.opted_out:
            text += " (opted out: CONVEYOR_ISOLATION=none)"
        if self.memory:
            text += f", memory {self.memory}"
        return text


def app_uid(app: str) -> int:
    """The uid (and gid) an app's instances run as under a root platform; stable per name."""
    digest = hashlib.blake2b(app.encode(), digest_size=8).digest()
    return UID_BASE + int.from_bytes(digest, "big") % UID_RANGE


def _label(app: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in app)[:40] or "app"


def _wrapper(python: str, spec: Mapping[str, Any]) -> list[str]:
    """The wrapper's command line for ``spec`` (options as :mod:`._sandbox_init` reads them)."""
    options: list[str] = []
    for name, value in spec.items():
        if name == "argv" or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            options += [flag, str(int(item)) if isinstance(item, bool) else str(item)]
    return [python, "-I", "-S", _sandbox_init.__file__, *options, "--", *spec["argv"]]


class IsolatedProcess:
    """A running isolated instance: a :class:`ProcessHandle` that also says how it was isolated."""

    def __init__(
        self,
        inner: Any,
        isolation: Isolation,
        memory: MemoryCage | None,
        tmp: Path,
        lines: list[str],
    ) -> None:
        self._inner = inner
        self.isolation = isolation
        self._memory = memory
        self._tmp = tmp
        self._lines = lines
        self._reason: str | None = None

    @property
    def tmp_folder(self) -> Path:
        """The instance's own temporary folder on the host (its /tmp inside); gone after exit."""
        return self._tmp

    @property
    def pid(self) -> int:
        pid: int = self._inner.pid
        return pid

    @property
    def returncode(self) -> int | None:
        code: int | None = self._inner.returncode
        return code

    async def wait(self) -> int:
        """Wait for exit; then read why it died and remove its cgroup and temporary folder."""
        status: int = await self._inner.wait()
        if self._tmp.exists():
            marks = [ln for ln in self._lines if ln.startswith(_sandbox_init.MARK)]
            if marks and status == _sandbox_init.SETUP_FAILED:
                text = marks[-1].removeprefix(_sandbox_init.MARK).strip()
                self._reason = f"could not isolate the instance: {text}"
            elif self._memory is not None and status != 0:
                self._reason = self._memory.breached(self._lines)
            if self._memory is not None:
                await asyncio.to_thread(self._memory.remove)
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)
            with contextlib.suppress(OSError):  # the platform's folder, once its last one went
                self._tmp.parent.rmdir()
        return status

    def crash_reason(self, status: int | None = None) -> str | None:
        """Why it died, when the platform knows better than its exit status (memory, set-up)."""
        return self._reason

    def describe_isolation(self) -> str:
        """One line for ``conveyor app``: ``namespaces+uid 3141592, memory cgroup v1 100 MiB``."""
        return self.isolation.describe()

    def signal_group(self, sig: int) -> None:
        self._inner.signal_group(sig)

    def memory_bytes(self) -> int | None:
        """Resident memory of the app's processes (the two small wrappers left out)."""
        return group_rss(self.pid, exclude_parent=self.pid)


class IsolatedSpawner:
    """Starts each instance in its own sandbox (see the module docstring); a :class:`Spawner`.

    ``hide`` adds folders to hide beyond the platform's own; ``memory_cgroups=False``
    enforces memory limits with RLIMIT_DATA even where a cgroup could be made.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        python: str | None = None,
        hide: Sequence[Path] = (),
        memory_cgroups: bool = True,
    ) -> None:
        self._python = python or sys.executable
        self._hidden = outermost(
            [*hidden_paths(settings), *user_private(), *(Path(p).resolve() for p in hide)]
        )
        # Never bound back whole: they hold the token, the registry, every app's files.
        self._guarded = [*self._hidden, settings.platform_dir.resolve()]
        self._opted_out = settings.isolation == "none"
        self._root = os.geteuid() == 0
        self._checked: Isolation | None = None
        self._cgroups = memory_cgroups
        #: Names this platform's instance folders and cgroups, so a restart finds its leftovers.
        self._tag = hashlib.blake2b(
            str(settings.home.resolve()).encode(), digest_size=6
        ).hexdigest()

    @property
    def folder(self) -> Path:
        """``<tmp>/conveyor-<tag>``: the folder of this platform's instance folders (per home)."""
        return Path(tempfile.gettempdir()) / f"conveyor-{self._tag}"

    def _tmp_root(self) -> Path:
        """:attr:`folder`, made private to this platform's user: every instance's own folder."""
        root = self.folder
        with contextlib.suppress(FileExistsError):
            # 0711: app uids may enter to reach their own folder, nobody may list it.
            root.mkdir(mode=0o711)
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise SpawnError(
                f"{root} is not a folder of this platform's user; "
                "another user may have made it to watch instances' files",
                hint=f"Remove {root}, or set TMPDIR for the platform to a folder of its own.",
            )
        root.chmod(0o711)
        return root

    def sweep(self) -> int:
        """Remove what instances of a killed platform left: their folders and empty cgroups.

        Call at start-up, after the previous platform's instances were stopped;
        returns how many leftovers went.
        """
        removed = sweep_cgroups(self._tag)
        root = self.folder
        with contextlib.suppress(OSError):
            for folder in root.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            root.rmdir()
        return removed

    @property
    def mechanism(self) -> str:
        if self._opted_out:
            return "none"
        return "namespaces+uid" if self._root else "user namespace"

    def check(self) -> Isolation:
        """Run one empty instance to prove isolation works here; raise if it does not.

        Cached after the first success. Opted out: says so, never raises.
        """
        if self._checked is not None:
            return self._checked
        if self._opted_out:
            self._checked = Isolation("none", opted_out=True)
            return self._checked
        import subprocess

        with tempfile.TemporaryDirectory(prefix="conveyor-probe-") as tmp:
            spec = self._spec(["true"], Sandbox(app="probe"), Path(tmp), None, None)
            try:
                done = subprocess.run(
                    _wrapper(self._python, spec),
                    env=platform_env(),
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise IsolationUnavailable(
                    f"cannot isolate app instances here: {exc}", hint=_OPT_OUT
                ) from exc
        if done.returncode != 0:
            why = done.stderr.strip().replace(_sandbox_init.MARK, "").strip() or (
                f"the sandbox exited with status {done.returncode}"
            )
            hint = _OPT_OUT
            if not self._root:
                hint = (
                    "Unprivileged user namespaces may be switched off here: allow them "
                    "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
                    "kernel.apparmor_restrict_unprivileged_userns=0), or "
                    + _OPT_OUT[0].lower()
                    + _OPT_OUT[1:]
                )
            raise IsolationUnavailable(
                f"cannot isolate app instances here ({self.mechanism}): {why}", hint=hint
            )
        self._checked = Isolation(self.mechanism)
        return self._checked

    def _spec(
        self,
        argv: Sequence[str],
        sandbox: Sandbox,
        tmp: Path,
        cwd: Path | None,
        memory: MemoryCage | None,
    ) -> dict[str, Any]:
        read_only = [Path(p).resolve() for p in sandbox.read_only]
        read_write = [Path(p).resolve() for p in sandbox.read_write]
        for path in [*read_only, *read_write]:
            if any(path == g or path in g.parents for g in self._guarded):
                raise SpawnError(
                    f"app {sandbox.app!r} may not be given {path}: "
                    "it holds the platform's own files (its token, registry, other apps)",
                    hint="Give the app only the folders it needs inside it, e.g. its droplet.",
                )
        uid = app_uid(sandbox.app) if self._root and not self._opted_out else None
        hidden, read_only = mounts(
            self._hidden, read_only, read_write, tmp, own_uid=uid is not None
        )
        return {
            "argv": list(argv),
            "namespaces": not self._opted_out,
            "userns": not self._root,
            "uid": uid,
            "gid": uid,
            "cgroup": None if memory is None or not memory.procs_file else str(memory.procs_file),
            "rlimit_data": None if memory is None else memory.rlimit,
            "hide": [str(p) for p in hidden],
            "ro": [str(p) for p in read_only if p.exists()],
            "rw": [str(p) for p in read_write if p.exists()],
            "tmp": str(tmp),
            "cwd": None if cwd is None else str(cwd.resolve()),
        }

    async def spawn(self, request: SpawnRequest) -> IsolatedProcess:
        """Start a process in a sandbox; refuse (:class:`IsolationUnavailable`) where none works."""
        argv, env, cwd, output = request.argv, request.env, request.cwd, request.output
        if not argv:
            raise SpawnError("an instance needs a command to run; the command is empty")
        if cwd is not None and not cwd.is_dir():
            raise SpawnError(f"cannot start {argv[0]!r}: its folder {cwd} does not exist")
        sandbox = request.sandbox or Sandbox(app=env.get("CONVEYOR_APP", "app"))
        isolation = (
            self._checked if self._checked is not None else await asyncio.to_thread(self.check)
        )
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{_label(sandbox.app)}-", dir=self._tmp_root()))
        except FileNotFoundError:  # the last instance's exit removed the folder just now
            tmp = Path(tempfile.mkdtemp(prefix=f"{_label(sandbox.app)}-", dir=self._tmp_root()))
        memory = None
        if sandbox.memory_limit is not None:
            label = f"{self._tag}-{_label(sandbox.app)}"
            memory = await asyncio.to_thread(
                cage, sandbox.memory_limit, label, cgroups=self._cgroups
            )
        try:
            spec = self._spec(argv, sandbox, tmp, cwd, memory)
            if spec["uid"] is not None:
                os.chown(tmp, spec["uid"], spec["gid"])
            home = str(tmp) if self._opted_out else SANDBOX_TMP
            clean = {**without_platform_secrets(env), "HOME": home, "TMPDIR": home}
            lines: list[str] = []

            def tee(stream: Stream, text: str) -> None:
                if stream == "stderr":
                    lines.append(text)
                    del lines[:-50]
                output(stream, text)

            inner = await SubprocessSpawner().spawn(
                SpawnRequest(_wrapper(self._python, spec), clean, cwd, tee)
            )
        except BaseException:
            if memory is not None:
                memory.remove()
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                tmp.parent.rmdir()
            raise
        got = Isolation(
            isolation.mechanism,
            uid=spec["uid"],
            memory=None if memory is None else memory.describe(),
            opted_out=isolation.opted_out,
        )
        return IsolatedProcess(inner, got, memory, tmp, lines)
