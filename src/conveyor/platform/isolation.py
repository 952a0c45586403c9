"""Isolation of pushed apps from the platform and from each other.

An instance gets a clean environment (:func:`instance_env`) and runs inside
new mount, pid and IPC namespaces (:mod:`._sandbox_init`) where
``$CONVEYOR_HOME``, the artifact store and the registry are hidden under
empty tmpfs folders; only what the instance needs is bound back — its droplet
read-only, the folders it is given read-write — with a private ``/tmp`` and a
``/proc`` that shows its own processes only. The mechanism depends on who
runs the platform:

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
import json
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
from conveyor.platform.logs import Stream
from conveyor.platform.memlimit import MemoryCage, cage
from conveyor.platform.memlimit import sweep as sweep_cgroups
from conveyor.platform.processes import SpawnRequest, SubprocessSpawner, group_rss

__all__ = [
    "PLATFORM_VARIABLES",
    "IsolatedProcess",
    "IsolatedSpawner",
    "Isolation",
    "IsolationUnavailable",
    "Sandbox",
    "app_uid",
    "hidden_paths",
    "instance_env",
    "platform_env",
]

#: The PATH an instance starts with (its manifest may prepend its venv's bin).
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The variables the platform itself documents for an instance.
PLATFORM_VARIABLES = (
    "PORT",
    "CONVEYOR_INSTANCE_INDEX",
    "CONVEYOR_APP",
    "CONVEYOR_APP_REVISION",
    "CONVEYOR_SERVICES",
)
#: Variables of the platform's own settings: an instance never sees them, whoever set them.
#: (CONVEYOR_TRUSTED_TYPES is not one: it only widens what an instance itself loads, and
#: the platform passes the operator's value to the model apps it serves.)
_PLATFORM_SECRETS = frozenset(
    {
        "CONVEYOR_HOME",
        "CONVEYOR_API",
        "CONVEYOR_API_TOKEN",
        "CONVEYOR_ROUTER",
        "CONVEYOR_DATABASE_URL",
        "CONVEYOR_ARTIFACT_ROOT",
        "CONVEYOR_ENV_CACHE",
        "CONVEYOR_ISOLATION",
    }
)
#: Where per-app uids start and how many there are (above what distributions and
#: the usual subordinate-id ranges hand out; no /etc/passwd entry is needed).
UID_BASE = 3_000_000
UID_RANGE = 1 << 20
#: Where an instance's own temporary folder appears inside its sandbox.
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private folder bound there, not the shared /tmp
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


def platform_env(host_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every instance starts from: a minimal PATH, the locale and the time zone."""
    host = os.environ if host_env is None else host_env
    env = {"PATH": MINIMAL_PATH, "LANG": host.get("LANG") or "C.UTF-8"}
    for name in ("LC_ALL", "TZ"):
        if host.get(name):
            env[name] = host[name]
    return env


def instance_env(
    manifest_env: Mapping[str, str],
    *,
    app: str,
    revision: int,
    index: int,
    port: int,
    services: Mapping[str, Mapping[str, Any]] | None = None,
    tmpdir: str = SANDBOX_TMP,
    host_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one instance: nothing of the platform's own.

    What the manifest gives, the bound services (``CONVEYOR_SERVICES``, JSON),
    the platform's documented variables, a minimal PATH (the manifest's wins),
    LANG/LC_ALL/TZ, and HOME and TMPDIR at the instance's own temporary folder.
    """
    bound = [{"name": name, "credentials": dict(creds)} for name, creds in (services or {}).items()]
    env = platform_env(host_env)
    env.update(manifest_env)
    env.update(
        {
            "PORT": str(port),
            "CONVEYOR_INSTANCE_INDEX": str(index),
            "CONVEYOR_APP": app,
            "CONVEYOR_APP_REVISION": str(revision),
            "CONVEYOR_SERVICES": json.dumps({"user-provided": bound}),
            "HOME": tmpdir,
            "TMPDIR": tmpdir,
        }
    )
    return _without_secrets(env)


def _without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _PLATFORM_SECRETS}


def hidden_paths(settings: Settings) -> list[Path]:
    """The platform's state an instance must not see: home, artifacts, environments, registry."""
    paths = [settings.home, settings.artifact_root, settings.env_cache]
    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        registry = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        # The WAL and shared-memory files sit beside it: hide the folder.
        paths.append(registry.parent if registry.parent != Path("/") else registry)
    return _outermost([p.resolve() for p in paths if p.exists()])


def _user_private() -> list[Path]:
    """The platform user's home and runtime folder (keys, agent sockets): hidden too.

    In a user namespace the app *is* that user, so only hiding keeps it from
    ``~/.ssh`` or the ssh-agent's socket; what the app needs from there (the
    platform's interpreter, its droplets) is bound back.
    """
    found = [Path(f"/run/user/{os.getuid()}")]
    with contextlib.suppress(RuntimeError, KeyError):  # no HOME and no passwd entry
        found.append(Path.home())
    return [p.resolve() for p in found if p.is_dir() and p.resolve() != Path("/")]


#: Folders the instance's own temporary folder stands in for.
_SCRATCH = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108


def _runtime_paths() -> list[Path]:
    """The platform's interpreter and packages, which model and stream apps run on."""
    # The folder that holds the ``conveyor`` package (src/ in a checkout, site-packages installed).
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[2]}
    return sorted(p.resolve() for p in paths)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _label(app: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in app)[:40] or "app"


def _closed_ancestors(paths: Sequence[Path]) -> list[Path]:
    """Folders above ``paths`` that other users may not enter (a 0700 home, say).

    A root platform hides them too: its tmpfs stand-ins are traversable, so
    the app's own uid reaches what is bound back and nothing else there.
    """
    closed: set[Path] = set()
    for path in paths:
        for folder in reversed(path.parents):
            with contextlib.suppress(OSError):
                if not folder.stat().st_mode & stat.S_IXOTH:
                    closed.add(folder)
                    break
    return sorted(closed)


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """Hiding a folder hides what is inside it: keep the outermost only."""
    found = sorted(set(paths))
    return [p for p in found if not any(q != p and q in p.parents for q in found)]


def _open_to(path: Path) -> None:
    """Let any uid read a bound-back folder whose hidden parents still guard it from local users."""
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        wanted = 0o005 if stat.S_ISDIR(mode) else 0o004
        if mode & wanted != wanted:
            path.chmod(stat.S_IMODE(mode) | wanted)


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
        self._hidden = _outermost(
            [*hidden_paths(settings), *_user_private(), *(Path(p).resolve() for p in hide)]
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
        hidden = list(self._hidden)
        runtime = _runtime_paths()
        if uid is not None:
            hidden = _outermost(
                hidden + _closed_ancestors([*read_only, *read_write, *runtime, tmp])
            )
        # The runtime comes back where it is hidden, and where the instance's own /tmp
        # covers it (a checkout in /tmp runs its apps from a venv there).
        read_only += [p for p in runtime if _under(p, hidden) or _under(p, _SCRATCH)]
        if uid is not None:
            for path in read_only:
                if _under(path, hidden):
                    _open_to(path)
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
            clean = {**_without_secrets(env), "HOME": home, "TMPDIR": home}
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
