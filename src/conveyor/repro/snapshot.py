"""Code snapshots: the working tree a run started from, kept in the artifact store.

Inside a git repository the snapshot holds the tracked files plus the untracked
files git does not ignore, as they are on disk (so uncommitted changes are
kept), with the commit, branch and dirty flag beside it. Outside git it holds
the folder's files minus the usual caches and virtual environments.

The snapshot itself is a manifest (JSON, stored by digest) listing each file's
path, mode and blob digest; unchanged files cost nothing the second time.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.errors import RunError, SnapshotTooLarge, StoreError
from conveyor.store.blobs import BlobStore

__all__ = ["CodeState", "materialize", "read_manifest", "take_snapshot"]

#: Folders never snapshotted outside git (inside git, .gitignore decides).
_SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".tox",
    ".conveyor",
    ".ipynb_checkpoints",
}
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class CodeState:
    """What ``conveyor run`` records about code."""

    snapshot: str  # digest of the manifest
    root: Path  # the snapshotted folder (repository root, or the run's cwd)
    cwd: str  # the run's cwd relative to root, posix
    files: int
    size: int
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "root": str(self.root),
            "cwd": self.cwd,
            "files": self.files,
            "size": self.size,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
        }


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode("utf-8", "surrogateescape")


def _git_state(root: Path) -> tuple[str | None, str | None, bool | None]:
    """Commit, branch and dirty flag from one ``git status`` call."""
    out = _git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=normal", "-z")
    if out is None:
        return None, None, None
    commit = branch = None
    dirty = False
    for entry in out.split("\0"):
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry.removeprefix("# branch.head ")
            branch = None if head == "(detached)" else head
        elif entry and not entry.startswith("#"):
            dirty = True
    return commit, branch, dirty


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = Path(dirpath).relative_to(root)
        found.extend(str(PurePosixPath(rel, f)) for f in filenames if not f.endswith(".pyc"))
    return found


def take_snapshot(cwd: Path, store: BlobStore, *, limit: int) -> CodeState:
    """Snapshot the tree around ``cwd`` into ``store``; SnapshotTooLarge past ``limit`` bytes."""
    cwd = cwd.resolve()
    top = _git(cwd, "rev-parse", "--show-toplevel")
    commit = branch = None
    dirty: bool | None = None
    if top:
        root = Path(top.strip()).resolve()
        listing = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        names = sorted(set(filter(None, (listing or "").split("\0"))))
        commit, branch, dirty = _git_state(root)
    else:
        root = cwd
        names = sorted(_walk(root))

    entries: list[tuple[str, Path, os.stat_result]] = []
    total = 0
    for name in names:
        path = root / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # tracked but deleted in the working tree
        if not stat.S_ISREG(st.st_mode):
            continue  # symlinks, sockets, submodule folders
        total += st.st_size
        entries.append((name, path, st))
    if total > limit:
        biggest = sorted(entries, key=lambda e: e[2].st_size, reverse=True)[:3]
        listing_text = ", ".join(f"{n} ({e.st_size / 1e6:.1f} MB)" for n, _, e in biggest)
        raise SnapshotTooLarge(
            f"the working tree at {root} holds {total / 1e6:.1f} MB, more than the "
            f"snapshot limit of {limit / 1e6:.1f} MB (largest: {listing_text})",
            hint="Declare large data with --input (stored once, by digest) and add it to "
            ".gitignore, or raise the limit with CONVEYOR_SNAPSHOT_LIMIT=1G.",
        )

    files = []
    for name, path, st in entries:
        try:
            digest = store.put_file(path)
        except OSError as exc:
            raise RunError(f"cannot read {path} for the code snapshot: {exc.strerror}") from exc
        files.append({"path": name, "digest": digest, "mode": st.st_mode & 0o777})
    manifest = {"version": MANIFEST_VERSION, "files": files}
    rel = cwd.relative_to(root)
    return CodeState(
        snapshot=store.put_json(manifest),
        root=root,
        cwd=rel.as_posix() if str(rel) != "." else ".",
        files=len(files),
        size=total,
        commit=commit,
        branch=branch,
        dirty=dirty,
    )


def read_manifest(store: BlobStore, digest: str) -> list[dict[str, Any]]:
    manifest = store.read_json(digest)
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise StoreError(f"artifact {digest} is not a code snapshot manifest")
    files: list[dict[str, Any]] = manifest["files"]
    return files


def _safe_target(dest: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise StoreError(f"snapshot entry {name!r} would escape the destination folder")
    return dest.joinpath(*rel.parts)


def materialize(store: BlobStore, digest: str, dest: Path) -> int:
    """Write the snapshot's files under ``dest``; returns how many were written."""
    files = read_manifest(store, digest)
    for entry in files:
        target = _safe_target(dest, entry["path"])
        store.export(entry["digest"], target)
        target.chmod(int(entry.get("mode", 0o644)) | 0o200)
    return len(files)
