"""The wrapper an isolated instance starts in: namespaces, mounts, a tiny init, then the app.

Run as ``python -I -S _sandbox_init.py OPTIONS -- APP ARGV`` (standard
library only, nothing of Conveyor imported — not even json or the signal
module's enums — so it starts in a few milliseconds). OPTIONS, each a flag
and a value::

    --hide PATH  --ro PATH  --rw PATH   (repeated)   --tmp PATH  --cwd PATH
    --uid N  --gid N  --cgroup PROCS_FILE  --rlimit-data BYTES
    --userns 1   --namespaces 0

Three processes, all in the instance's one process group (the supervisor's
``killpg`` and RSS sum see them all):

- the *outer* process (this one) joins the memory cgroup, enters new mount,
  pid and IPC namespaces (and a user namespace when not root), forks, and
  exits exactly as the app did — same code, or killed by the same signal;
- the *init* (pid 1 of the new pid namespace) hides the platform's folders,
  binds back what the instance may see, mounts a fresh /proc, forks the app
  and reaps; when it exits the kernel kills whatever the app left behind;
- the *app*, with no capabilities, as its own uid when the platform is root.

A SIGTERM sent to the group reaches the app directly (it stays in the group);
the outer and init only forward it if the app moved to a group of its own,
so the app never gets it twice.
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    #: The parsed options (see the module docstring).
    Spec = dict[str, Any]
else:
    import _signal as signal  # the C module: ``signal`` would import enum (~10 ms)

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
ST_RELATIME = 4096
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
#: Exit status of the outer process when the sandbox could not be built.
SETUP_FAILED = 125
#: Prefix of the one line this wrapper writes when it fails; the spawner looks for it.
MARK = "conveyor-isolation:"

_libc = ctypes.CDLL(None, use_errno=True)


class _SetupError(Exception):
    """Building the sandbox failed; the message says which step."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise _SetupError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces(spec: Spec) -> None:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    uid, gid = os.getuid(), os.getgid()
    if spec.get("userns"):
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if spec.get("userns"):
        # Root inside maps to the platform's own user outside: it may mount, nothing more.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def _lock_flags(path: str) -> int:
    """The flags a read-only remount must keep (a user namespace may not drop them)."""
    got = os.statvfs(path).f_flag
    keep = got & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return keep | (MS_RELATIME if got & ST_RELATIME else 0)


SYS_MOUNT_SETATTR = 442  # the same number on every architecture
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _read_only_everywhere() -> None:
    """Make every mount read-only: the app writes only where it is given a folder.

    Without this, an app in a user namespace could write whatever the
    platform's user can (its code, its shell's start-up files).
    """
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    done = _libc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(-100),  # AT_FDCWD
        b"/",
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if done == 0:
        return
    # Kernels before 5.12: one read-only bind remount per mount point.
    with open("/proc/self/mountinfo") as handle:
        points = {line.split()[4].replace("\\040", " ") for line in handle}
    for point in sorted(points):
        try:
            _mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _lock_flags(point))
        except (_SetupError, OSError):
            if point == "/":
                raise


def _set_writable(path: str, writable: bool) -> None:
    """Remount a bind mount read-write or read-only (a bind starts with its source's flags)."""
    flags = MS_BIND | MS_REMOUNT | _lock_flags(path) | (0 if writable else MS_RDONLY)
    _mount(None, path, None, flags)


def _make_target(path: str, is_dir: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if is_dir:
        os.mkdir(path)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _build_view(spec: Spec) -> None:
    """Hide the platform's folders, bind back the instance's paths, private /tmp and /proc."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Open every path to bind back before hiding anything: once a tmpfs covers
    # its parent, the path itself can no longer be reached.
    binds = []
    for path, writable in [(p, False) for p in spec["ro"]] + [(p, True) for p in spec["rw"]]:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            raise _SetupError(
                f"cannot open {path} to give it to the instance: {exc.strerror}"
            ) from None
        binds.append((path, fd, writable, os.path.isdir(path)))
    tmp_fd = os.open(spec["tmp"], os.O_PATH | os.O_CLOEXEC)
    _read_only_everywhere()
    for path in spec["hide"]:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
    # The instance's own folder is its /tmp (and the other shared scratch places).
    for target in ("/tmp", "/var/tmp", "/dev/shm"):  # noqa: S108
        if os.path.isdir(target):
            _mount(f"/proc/self/fd/{tmp_fd}", target, None, MS_BIND)
            _set_writable(target, True)
    for path, fd, writable, is_dir in sorted(binds):
        _make_target(path, is_dir)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _set_writable(path, writable)
        os.close(fd)
    os.close(tmp_fd)
    for path in spec["hide"]:
        # Now that the bound-back paths hang in them, the stand-ins become read-only too
        # (one under /tmp is out of sight already: the instance's own folder covers it).
        if os.path.isdir(path) and os.path.ismount(path):
            _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _drop_privileges(spec: Spec) -> None:
    """Leave the app no capabilities (and its own uid when the platform is root)."""
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])


def _execvp(argv: list[str]) -> None:
    """``os.execvp`` without its lazy ``import warnings``, which the app's uid may not read."""
    if "/" in argv[0]:
        os.execv(argv[0], argv)  # noqa: S606 - the app's own command
    error: OSError = FileNotFoundError(2, "No such file or directory")
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execv(os.path.join(folder or ".", argv[0]), argv)  # noqa: S606
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # found but not runnable: say so rather than "not found"
            error = exc
    raise error


def _exec_app(spec: Spec) -> None:
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if spec.get("rlimit_data"):
            import resource

            limit = int(spec["rlimit_data"])
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        if spec.get("namespaces", True):
            _drop_privileges(spec)
        _execvp(spec["argv"])
    except OSError as exc:
        sys.stderr.write(f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        os._exit(127)
    except _SetupError as exc:
        sys.stderr.write(f"{MARK} {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)


def _forwarder(child: int) -> Callable[[int, FrameType | None], None]:
    def forward(sig: int, _frame: FrameType | None) -> None:
        # The group's signal already reached the child unless it left the group.
        try:
            if os.getpgid(child) != os.getpgrp():
                os.kill(child, sig)
        except OSError:
            pass

    return forward


def _init(spec: Spec, report: int) -> None:
    """Pid 1 of the instance: build the view, run the app, reap, report its status."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Keeps the app (same uid in a user namespace) from ptracing the init, which
    # still holds the capabilities to undo the mounts.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    try:
        _build_view(spec)
        os.chdir(spec["cwd"] if spec.get("cwd") and os.path.isdir(spec["cwd"]) else "/tmp")  # noqa: S108
    except (_SetupError, OSError) as exc:
        sys.stderr.write(f"{MARK} {exc}\n")
        sys.stderr.flush()
        os.write(report, b"E")
        os._exit(SETUP_FAILED)
    app = os.fork()
    if app == 0:
        os.close(report)
        _exec_app(spec)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _forwarder(app))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == app:
            os.write(report, str(status).encode())
            os._exit(0)


def _exit_like(status: int) -> None:
    """Exit with the app's code, or die of the signal that killed it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        # Still here: a signal whose default is to be ignored; the shell's convention then.
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


_LISTS = ("hide", "ro", "rw")
_NUMBERS = ("uid", "gid", "rlimit_data", "userns", "namespaces")


def parse(args: list[str]) -> Spec:
    """The options before ``--`` (see the module docstring), and the app's argv after it."""
    spec: Spec = {name: [] for name in _LISTS}
    spec["namespaces"] = 1
    at = 0
    while args[at] != "--":
        name, value = args[at].removeprefix("--").replace("-", "_"), args[at + 1]
        if name in _LISTS:
            spec[name].append(value)
        else:
            spec[name] = int(value) if name in _NUMBERS else value
        at += 2
    spec["argv"] = args[at + 1 :]
    return spec


def main() -> None:
    """Outer process: cgroup, namespaces, fork the init, then mirror the app's exit."""
    spec = parse(sys.argv[1:])
    try:
        if spec.get("cgroup"):
            _write(spec["cgroup"], str(os.getpid()))
        if not spec.get("namespaces", True):
            # Isolation opted out: only the memory limit applies, and nothing stays in between.
            if spec.get("cwd"):
                os.chdir(spec["cwd"])
            _exec_app(spec)
        _enter_namespaces(spec)
    except (_SetupError, OSError) as exc:
        sys.stderr.write(f"{MARK} {exc}\n")
        sys.exit(SETUP_FAILED)
    read_end, write_end = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(read_end)
        _init(spec, write_end)
    os.close(write_end)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _forwarder(init))
    chunks = []
    while chunk := os.read(read_end, 64):
        chunks.append(chunk)
    _, init_status = os.waitpid(init, 0)
    reported = b"".join(chunks)
    if reported == b"E":
        os._exit(SETUP_FAILED)
    _exit_like(int(reported) if reported.isdigit() else init_status)


if __name__ == "__main__":
    main()
