"""A reader over one blob that hashes what it hands out and refuses a mismatch at end of file.

Streaming consumers (``pandas.read_csv``, ``zipfile``, ``tarfile``) get the
bytes as they are read, so a corruption can only be detected when the end is
reached: the read that reaches it raises IntegrityError instead of returning
its last bytes. Seeking is allowed; bytes skipped over are hashed on the way
(a seek to the end, as ``zipfile`` does first, verifies the whole blob).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from conveyor.errors import IntegrityError
from conveyor.store.digests import format_digest, new_hasher

__all__ = ["VerifyingReader", "integrity_error"]

_CHUNK = 1 << 20


def integrity_error(digest: str, path: Path | str) -> IntegrityError:
    """The error for a blob whose bytes no longer match its name."""
    return IntegrityError(
        f"artifact {digest} is corrupted: the bytes of {path} no longer match its digest",
        hint="The file was changed or damaged on disk. Delete it and store the original "
        "content again (or restore it from a backup); it is never returned as it is.",
    )


class VerifyingReader(io.RawIOBase):
    """Raw, seekable reader over an open blob file descriptor (which it owns and closes)."""

    def __init__(self, fd: int, digest: str, path: Path | str) -> None:
        super().__init__()
        self._fd = fd
        self._digest = digest
        self._path = path
        self.name = str(path)
        self._size = os.fstat(fd).st_size
        self._pos = 0
        self._hasher = new_hasher()
        self._hashed = 0  # bytes [0, _hashed) have gone through the hasher
        self._checked_at = -1  # _hashed when the digest was last compared (-1: never)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._ensure_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._ensure_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = os.fstat(self._fd).st_size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if target < 0:
            raise OSError(22, f"negative seek position {target}")
        self._pos = target
        return target

    def readinto(self, buffer: Any) -> int:
        self._ensure_open()
        view = memoryview(buffer).cast("B")
        if self._pos > self._hashed:
            self._hash_up_to(self._pos)
        n = os.preadv(self._fd, [view], self._pos) if len(view) else 0
        end = self._pos + n
        if n and end > self._hashed:
            self._hasher.update(view[self._hashed - self._pos : n])
            self._hashed = end
        if (n == 0 and len(view)) or self._hashed >= self._size:
            if n == 0:
                self._hash_up_to(None)
            self._check()
        self._pos = end
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()

    def _ensure_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _hash_up_to(self, target: int | None) -> None:
        """Hash the bytes from ``_hashed`` to ``target`` (or to end of file when None)."""
        while target is None or self._hashed < target:
            want = _CHUNK if target is None else min(_CHUNK, target - self._hashed)
            chunk = os.pread(self._fd, want, self._hashed)
            if not chunk:
                return
            self._hasher.update(chunk)
            self._hashed += len(chunk)

    def _check(self) -> None:
        if self._checked_at == self._hashed:
            return
        if format_digest(self._hasher.digest()) != self._digest:
            raise integrity_error(self._digest, self._path)
        self._checked_at = self._hashed
