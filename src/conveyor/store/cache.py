"""A bounded local cache of verified blobs, for a store whose blobs live elsewhere (a bucket).

Entries are files named by the digest's hex under one private folder (0700,
files 0400), written to a temporary file first and renamed into place. Reading
an entry touches its modification time, and adding one removes the least
recently used others until the total fits the capacity: the cache holds at
most its capacity, plus the one blob just added if that alone is larger.

Nothing here is the truth: the store re-checks an entry's digest before using
it and fetches it again when it no longer matches, and any entry may be
deleted at any time (``rm -r $CONVEYOR_HOME/cache`` is always safe).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor.store.blobs import STALE_TEMP_SECONDS
from conveyor.store.files import TEMP_SUFFIX, create_temp, private_dir, sorted_entries

__all__ = ["ReadCache"]


class ReadCache:
    """Verified copies of blobs, least recently used first out; see the module docstring."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self._tmp = self.root / "tmp"

    def path(self, digest: str) -> Path:
        """Where ``digest``'s copy is (or would be) kept; ``digest`` must be validated."""
        return self.root / digest.partition(":")[2]

    def get(self, digest: str) -> Path | None:
        """The cached copy of ``digest`` (marked as just used), or None."""
        path = self.path(digest)
        try:
            os.utime(path)
        except OSError:
            return None
        return path

    def new_temp(self) -> tuple[int, Path]:
        """A private temporary file in the cache, to be added with :meth:`add` or discarded."""
        try:
            return create_temp(self._tmp, "")
        except FileNotFoundError:
            private_dir(self._tmp)
            return create_temp(self._tmp, "")

    def add(self, tmp: Path, digest: str) -> Path:
        """Make the finished (checked) temporary file ``tmp`` the copy of ``digest``."""
        final = self.path(digest)
        os.replace(tmp, final)
        self._evict(keep=final.name)
        return final

    def drop(self, digest: str) -> None:
        """Forget ``digest``'s copy (gone from the store, or found damaged)."""
        self.path(digest).unlink(missing_ok=True)

    def _evict(self, keep: str) -> None:
        entries = []
        total = 0
        for entry in sorted_entries(self.root):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # evicted by another process meanwhile
            if entry.is_file(follow_symlinks=False):
                entries.append((st.st_mtime, entry.name, st.st_size))
                total += st.st_size
        entries.sort()
        for _, name, size in entries:
            if total <= self.capacity:
                break
            if name != keep:
                (self.root / name).unlink(missing_ok=True)
                total -= size
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Temporary files of a process that died mid-download would otherwise stay forever."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for entry in sorted_entries(self._tmp):
            try:
                if entry.name.endswith(TEMP_SUFFIX) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
