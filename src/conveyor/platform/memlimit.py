"""Memory limits the kernel enforces: a cgroup per instance, or RLIMIT_DATA where none may be made.

Polling resident memory (what the supervisor does) lets an app overshoot its
limit between two polls — one reached 189 MiB under 100 MiB — and the request
in flight then fails as a bare connection error. A memory cgroup stops the
app at the limit; its ``oom_kill`` counter then says why it died. Where the
platform may not create a cgroup (an unprivileged user on most laptops),
RLIMIT_DATA makes allocations past the limit fail (Python raises
MemoryError), which the instance's last lines show. RLIMIT_DATA rather than
RLIMIT_AS: it counts what a process writes to (heap, anonymous maps), not the
address space that BLAS arenas and memory-mapped model files merely reserve.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryCage", "cage", "describe_size", "memory_reason", "sweep"]

#: Lines that say a process ran out of memory under an rlimit (Python, C, C++).
_OOM_WORDS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def describe_size(size: int) -> str:
    """``100 MiB`` for a byte count."""
    return f"{size / (1024 * 1024):.0f} MiB"


def memory_reason(limit: int, how: str) -> str:
    """The crash reason the supervisor shows for a breached limit."""
    return f"memory limit {describe_size(limit)} exceeded ({how})"


@dataclass
class MemoryCage:
    """One instance's memory limit and how it is enforced."""

    limit: int
    #: "cgroup v2", "cgroup v1" or "RLIMIT_DATA".
    mechanism: str
    #: The cgroup's folder (None under an rlimit).
    group: Path | None = None

    @property
    def procs_file(self) -> Path | None:
        """Where the instance's first process writes its pid to join the cgroup."""
        return None if self.group is None else self.group / "cgroup.procs"

    @property
    def rlimit(self) -> int | None:
        return self.limit if self.group is None else None

    def describe(self) -> str:
        return f"{self.mechanism} {describe_size(self.limit)}"

    def breached(self, last_lines: list[str]) -> str | None:
        """Why the instance died, if its limit killed it (read after it exited)."""
        if self.group is None:
            if any(word in line for line in last_lines[-20:] for word in _OOM_WORDS):
                return memory_reason(self.limit, "an allocation failed under RLIMIT_DATA")
            return None
        name = "memory.events" if self.mechanism == "cgroup v2" else "memory.oom_control"
        try:
            text = (self.group / name).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return memory_reason(self.limit, "killed by the kernel in its memory cgroup")
        return None

    def remove(self) -> None:
        """Delete the cgroup (its processes are gone by now; a straggler may need a moment)."""
        if self.group is not None:
            _remove_group(self.group)


def _remove_group(group: Path) -> bool:
    """rmdir a cgroup, waiting a little while its last killed process is torn down."""
    for _ in range(50):
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            # EBUSY: a process still in it (being torn down, or alive: then it stays).
            os.sched_yield()
    return False


def _own_cgroups(proc_self: Path = Path("/proc/self")) -> tuple[dict[str, str], dict[str, Path]]:
    """This process's cgroup per controller ("" for v2) and where each hierarchy is mounted."""
    paths: dict[str, str] = {}
    for line in (proc_self / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    mounts: dict[str, Path] = {}
    for line in (proc_self / "mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = after.split(" ")[:3]
        point = Path(before.split(" ")[4])
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup" and "memory" in options.split(","):
            mounts["memory"] = point
    return paths, mounts


def _make_group(parent: Path, name: str, files: dict[str, str]) -> Path | None:
    group = parent / name
    try:
        group.mkdir()
    except OSError:
        return None
    try:
        for file, value in files.items():
            (group / file).write_text(value)
    except OSError:
        group.rmdir()
        return None
    return group


def _parents() -> list[Path]:
    """The cgroups this process may make children in (v2 first, then v1's memory)."""
    try:
        paths, mounts = _own_cgroups()
    except (OSError, ValueError, IndexError):
        return []
    return [
        mounts[key] / paths[key].lstrip("/")
        for key in ("", "memory")
        if key in mounts and key in paths
    ]


def sweep(label: str) -> int:
    """Remove the empty cgroups ``cage(…, label)`` made and nobody removed (a killed platform's)."""
    removed = 0
    for parent in _parents():
        with contextlib.suppress(OSError):
            for group in parent.glob(f"conveyor-{label}-*"):
                # rmdir refuses a cgroup that still holds processes: those are left alone.
                removed += _remove_group(group)
    return removed


def cage(limit: int, label: str, *, cgroups: bool = True) -> MemoryCage:
    """A cgroup with ``limit`` for one instance where one can be made, else an rlimit.

    ``cgroups=False`` goes straight to the rlimit (what an unprivileged platform gets).
    """
    suffix = f"conveyor-{label}-{uuid.uuid4().hex[:8]}"
    try:
        paths, mounts = _own_cgroups() if cgroups else ({}, {})
    except (OSError, ValueError, IndexError):
        paths, mounts = {}, {}
    if "" in mounts and "" in paths:
        parent = mounts[""] / paths[""].lstrip("/")
        with contextlib.suppress(OSError):
            # Only usable where memory is delegated to our children already.
            if "memory" in (parent / "cgroup.subtree_control").read_text().split():
                files = {"memory.max": str(limit), "memory.swap.max": "0"}
                group = _make_group(parent, suffix, files) or _make_group(
                    parent, suffix, {"memory.max": str(limit)}
                )
                if group is not None:
                    return MemoryCage(limit, "cgroup v2", group)
    if "memory" in mounts and "memory" in paths:
        parent = mounts["memory"] / paths["memory"].lstrip("/")
        group = _make_group(parent, suffix, {"memory.limit_in_bytes": str(limit)})
        if group is not None:
            # Without it the app would page out to swap instead of stopping at the limit.
            with contextlib.suppress(OSError):
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
            return MemoryCage(limit, "cgroup v1", group)
    return MemoryCage(limit, "RLIMIT_DATA")
