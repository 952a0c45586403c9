"""Which host folders an instance's sandbox hides, and which it binds back.

The platform's state (:func:`hidden_paths`) and its user's private folders are
hidden under empty tmpfs folders; the runtime (the platform's interpreter and
packages) and what the instance is given come back. :mod:`.isolation` turns
these into the sandbox's mounts.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from conveyor.config import Settings

__all__ = ["hidden_paths", "mounts", "outermost", "user_private"]

#: Folders the instance's own temporary folder stands in for.
_SCRATCH = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108


def hidden_paths(settings: Settings) -> list[Path]:
    """The platform's state an instance must not see: home, artifacts, environments, registry."""
    paths = [settings.home, settings.artifact_root, settings.env_cache]
    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        registry = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        # The WAL and shared-memory files sit beside it: hide the folder.
        paths.append(registry.parent if registry.parent != Path("/") else registry)
    return outermost([p.resolve() for p in paths if p.exists()])


def user_private() -> list[Path]:
    """The platform user's home and runtime folder (keys, agent sockets): hidden too.

    In a user namespace the app *is* that user, so only hiding keeps it from
    ``~/.ssh`` or the ssh-agent's socket; what the app needs from there (the
    platform's interpreter, its droplets) is bound back.
    """
    found = [Path(f"/run/user/{os.getuid()}")]
    with contextlib.suppress(RuntimeError, KeyError):  # no HOME and no passwd entry
        found.append(Path.home())
    return [p.resolve() for p in found if p.is_dir() and p.resolve() != Path("/")]


def _runtime_paths() -> list[Path]:
    """The platform's interpreter and packages, which model and stream apps run on."""
    # The folder that holds the ``conveyor`` package (src/ in a checkout, site-packages installed).
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[2]}
    return sorted(p.resolve() for p in paths)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one."""
    return any(path == root or root in path.parents for root in roots)


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


def outermost(paths: Sequence[Path]) -> list[Path]:
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


def mounts(
    hidden: Sequence[Path],
    read_only: Sequence[Path],
    read_write: Sequence[Path],
    tmp: Path,
    *,
    own_uid: bool,
) -> tuple[list[Path], list[Path]]:
    """The folders to hide and those to bind back read-only, for an instance given
    ``read_only`` and ``read_write`` (resolved) and its temporary folder ``tmp``.

    ``own_uid`` (a root platform runs the app as a uid of its own): folders other
    users may not enter are hidden too, and what comes back under a hidden folder
    is opened to any uid.
    """
    hidden = list(hidden)
    runtime = _runtime_paths()
    if own_uid:
        hidden = outermost(hidden + _closed_ancestors([*read_only, *read_write, *runtime, tmp]))
    # The runtime comes back where it is hidden, and where the instance's own /tmp
    # covers it (a checkout in /tmp runs its apps from a venv there).
    back = [*read_only, *(p for p in runtime if _under(p, hidden) or _under(p, _SCRATCH))]
    if own_uid:
        for path in back:
            if _under(path, hidden):
                _open_to(path)
    return hidden, back
