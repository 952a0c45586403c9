"""Code snapshots: the working tree a run started from, kept in the artifact store.

Inside a git repository the snapshot holds the tracked files plus the untracked
files git does not ignore, as they are on disk (so uncommitted changes are
kept), with the commit, branch and dirty flag beside it. Outside git it holds
the folder's files minus the usual caches and virtual environments.

The snapshot itself is a manifest (JSON, stored by digest) listing each file's
path, mode and blob digest; unchanged files cost nothing the second time.
Symbolic links are kept as links (their target text) and never followed, so
nothing outside the tree is read through them; files an earlier run wrote as
its declared outputs (still unchanged) are results, not code, and are left out.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.errors import RunError, SnapshotTooLarge, StoreError
from conveyor.repro.ledger import KnownOutput
from conveyor.store.blobs import BlobStore

__all__ = [
    "CodeState",
    "human_size",
    "inside",
    "materialize",
    "read_links",
    "read_manifest",
    "snapshot_of_files",
    "take_snapshot",
]

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
#: How many skipped or left-out entries a run lists (the rest are counted, not named).
_LISTED = 100


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
    links: int = 0
    #: Digest of ``git diff HEAD`` (tracked files' uncommitted changes) when the tree is dirty.
    diff: str | None = None
    #: Entries not kept, each {"path", "reason"} (a file under a symlinked folder ...).
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: Files left out because an earlier run produced them, each {"path", "digest", "run"}.
    excluded_outputs: list[dict[str, str]] = field(default_factory=list)

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
            "links": self.links,
            "diff": self.diff,
            "skipped": self.skipped,
            "excluded_outputs": self.excluded_outputs,
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


def _diff(root: Path, store: BlobStore) -> str | None:
    """The uncommitted changes to tracked files, stored; None when there are none."""
    out = _git(root, "diff", "--no-color", "--no-ext-diff", "HEAD")
    if not out:
        return None
    return store.put_bytes(out.encode("utf-8", "surrogateescape"))


def human_size(size: float) -> str:
    """``512`` -> "512 bytes", ``5000`` -> "4.9 KB", ``3 << 20`` -> "3.0 MB" (binary units)."""
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TB"


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        # os.walk lists a symlinked folder among the folders and never enters it; it is
        # recorded as a link (its target text), like a symlinked file.
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        found.extend(str(PurePosixPath(rel, d)) for d in links)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and d not in links)
        found.extend(str(PurePosixPath(rel, f)) for f in filenames if not f.endswith(".pyc"))
    return found


class _Tree:
    """Sorts the listed names into files, symlinks and what cannot be kept, never leaving root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[tuple[str, Path, os.stat_result]] = []
        self.links: dict[str, str] = {}
        self.skipped: list[dict[str, str]] = []
        self._linked_dirs: dict[str, bool] = {}

    def _symlinked_parent(self, name: str) -> str | None:
        """The first folder on ``name``'s path that is a symlink (it would lead elsewhere)."""
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            linked = self._linked_dirs.get(folder)
            if linked is None:
                linked = self._linked_dirs[folder] = os.path.islink(self.root / folder)
            if linked:
                return folder
        return None

    def add(self, name: str) -> None:
        path = self.root / name
        via = self._symlinked_parent(name)
        if via is not None:
            if via not in self.links:
                self.links[via] = os.readlink(self.root / via)
            self.skipped.append(
                {"path": name, "reason": f"under the symbolic link {via} -> {self.links[via]}"}
            )
            return
        try:
            st = path.lstat()
        except FileNotFoundError:
            return  # tracked but deleted in the working tree
        if stat.S_ISLNK(st.st_mode):
            self.links[name] = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            self.files.append((name, path, st))
        else:
            kind = "a folder (a git submodule?)" if stat.S_ISDIR(st.st_mode) else "not a file"
            self.skipped.append({"path": name, "reason": kind})


def _drop_known_outputs(
    tree: _Tree, store: BlobStore, known: Mapping[str, list[KnownOutput]]
) -> list[dict[str, str]]:
    """Take out of ``tree`` the files still equal to an earlier run's recorded output."""
    excluded: list[dict[str, str]] = []
    kept = []
    for name, path, st in tree.files:
        candidates = [k for k in known.get(name, ()) if k.size == st.st_size]
        if candidates:
            digest = store.put_file(path)  # already stored when that run recorded it
            match = next((k for k in candidates if k.digest == digest), None)
            if match is not None:
                excluded.append({"path": name, "digest": digest, "run": match.run})
                continue
        kept.append((name, path, st))
    tree.files = kept
    return excluded


def snapshot_of_files(
    files: Mapping[str, Mapping[str, Any]], root: Path, store: BlobStore
) -> CodeState:
    """The snapshot of ``root`` when it holds exactly ``files``, already stored by digest.

    ``files`` maps a path to ``{"digest", "mode"}`` (a task app's registered
    files, which its steps' folders are made from): nothing is read or hashed
    again, and files a step finds beside them (inputs restored from earlier
    steps, its own outputs) are not taken for code.
    """
    entries: list[dict[str, Any]] = [
        {"path": path, "digest": str(entry["digest"]), "mode": _mode(entry)}
        for path, entry in sorted(files.items())
    ]
    size = sum(store.info(str(e["digest"])).size for e in entries)
    return CodeState(
        snapshot=store.put_json({"version": MANIFEST_VERSION, "files": entries}),
        root=root.resolve(),
        cwd=".",
        files=len(entries),
        size=size,
    )


def _mode(entry: Mapping[str, Any]) -> int:
    return 0o755 if int(entry.get("mode", 0o644)) & 0o111 else 0o644


def take_snapshot(
    cwd: Path,
    store: BlobStore,
    *,
    limit: int,
    known_outputs: Callable[[Path], Mapping[str, list[KnownOutput]]] | None = None,
) -> CodeState:
    """Snapshot the tree around ``cwd`` into ``store``; SnapshotTooLarge past ``limit`` bytes.

    ``known_outputs(root)`` names the files earlier runs recorded as outputs
    (path relative to root); those still holding that content are left out.
    """
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

    tree = _Tree(root)
    for name in names:
        tree.add(name)
    known = known_outputs(root) if known_outputs is not None else {}
    excluded = _drop_known_outputs(tree, store, known) if known else []
    total = sum(st.st_size for _, _, st in tree.files)
    if total > limit:
        biggest = sorted(tree.files, key=lambda e: e[2].st_size, reverse=True)[:3]
        listing_text = ", ".join(f"{n} ({human_size(e.st_size)})" for n, _, e in biggest)
        raise SnapshotTooLarge(
            f"the working tree at {root} holds {human_size(total)}, more than the "
            f"snapshot limit of {human_size(limit)} (largest: {listing_text})",
            hint="Declare large data with --input (stored once, by digest) and add it to "
            ".gitignore, or raise the limit with CONVEYOR_SNAPSHOT_LIMIT=1G.",
        )

    files = []
    for name, path, st in tree.files:
        try:
            digest = store.put_file(path)
        except OSError as exc:
            raise RunError(f"cannot read {path} for the code snapshot: {exc.strerror}") from exc
        files.append({"path": name, "digest": digest, "mode": st.st_mode & 0o777})
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "files": files}
    if tree.links:
        manifest["links"] = [{"path": p, "target": t} for p, t in sorted(tree.links.items())]
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
        links=len(tree.links),
        diff=_diff(root, store) if commit and dirty else None,
        skipped=tree.skipped[:_LISTED],
        excluded_outputs=excluded[:_LISTED],
    )


def read_manifest(store: BlobStore, digest: str) -> list[dict[str, Any]]:
    """The files of a snapshot manifest (path, digest, mode)."""
    return _manifest(store, digest)["files"]  # type: ignore[no-any-return]


def read_links(store: BlobStore, digest: str) -> dict[str, str]:
    """The symbolic links of a snapshot manifest: path -> target text."""
    return {e["path"]: e["target"] for e in _manifest(store, digest).get("links", [])}


def _manifest(store: BlobStore, digest: str) -> dict[str, Any]:
    manifest = store.read_json(digest)
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise StoreError(f"artifact {digest} is not a code snapshot manifest")
    return manifest


def _safe_target(dest: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise StoreError(f"snapshot entry {name!r} would escape the destination folder")
    return dest.joinpath(*rel.parts)


def inside(path: Path, folder: Path) -> bool:
    """True if ``path``, with every symlink on it resolved, lies within ``folder``."""
    return path.resolve().is_relative_to(folder.resolve())


def materialize(store: BlobStore, digest: str, dest: Path) -> int:
    """Write the snapshot's files and symlinks under ``dest``; returns how many were made."""
    manifest = _manifest(store, digest)
    for entry in manifest["files"]:
        target = _safe_target(dest, entry["path"])
        store.export(entry["digest"], target)
        target.chmod(int(entry.get("mode", 0o644)) | 0o200)
    # Links come last, so no file above is ever written through one of them.
    for entry in manifest.get("links", []):
        target = _safe_target(dest, entry["path"])
        if not inside(target.parent, dest):
            raise StoreError(f"snapshot link {entry['path']!r} would escape the destination")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(entry["target"], target)
    return len(manifest["files"]) + len(manifest.get("links", []))
