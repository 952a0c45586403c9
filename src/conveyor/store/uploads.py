"""Storing bytes as they arrive (``put_stream``) and copying a blob out (``export``), any store.

A store that mixes in :class:`StreamingPuts` names where chunks are spooled
(``_new_temp``), how a finished spool file is sealed, and how it becomes the
blob (``_commit``: a rename into the folder store, an upload for S3). The
checks on the way -- the size limit as bytes arrive, the digest at the end,
nothing left behind on any failure -- are written once, here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Protocol

from conveyor.errors import IntegrityError, StoreError, UsageError
from conveyor.store.digests import (
    MMAP_THRESHOLD,
    Digest,
    file_error,
    format_digest,
    hash_open,
    hash_path,
    new_hasher,
    open_regular,
    parse_digest,
    read_fd,
)
from conveyor.store.files import create_temp, discard, write_all

__all__ = ["StreamingPuts", "export_verified", "store_file"]


class _Spool(Protocol):
    def _new_temp(self) -> tuple[int, Path]: ...

    def _seal(self, fd: int) -> None: ...

    def _commit(self, tmp: Path, digest: Digest) -> None: ...

    def _write_error(self, exc: OSError, what: str = ...) -> StoreError: ...


class StreamingPuts:
    """``put_stream`` and ``put_stream_async`` over a store's spool hooks (see the module)."""

    def put_stream(
        self: _Spool,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        *,
        limit: int | None,
    ) -> str:
        """Store bytes as they arrive (an upload) and return their digest.

        Each chunk is hashed as it is written to a temporary file; the blob
        appears only once every byte is in and checked. More than ``limit``
        bytes (None: no limit) raise UsageError as soon as the limit is
        passed; bytes whose digest is not ``expected_digest`` raise UsageError
        naming both. On these errors, or one raised by ``chunks``, nothing is
        left behind. A stored copy is replaced by the checked new bytes, which
        repairs it if it was damaged.
        """
        upload = _Upload(self, expected_digest, limit)
        try:
            for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return upload.finish()

    async def put_stream_async(
        self: _Spool,
        chunks: AsyncIterable[bytes],
        expected_digest: str | None = None,
        *,
        limit: int | None,
    ) -> str:
        """``put_stream`` for an async handler, e.g. over Starlette's ``request.stream()``.

        Chunks are written on the event loop: writing one network chunk to the
        page cache takes microseconds, less than handing it to a thread. The
        final check and the publication (a rename, or an upload) run in a
        worker thread.
        """
        import asyncio  # lazily: the CLI's commands never need it

        upload = _Upload(self, expected_digest, limit)
        try:
            async for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return await asyncio.to_thread(upload.finish)


class _Upload:
    """One blob being written from chunks: hashed as written, published only when checked."""

    def __init__(self, store: _Spool, expected: str | None, limit: int | None) -> None:
        self._store = store
        self._expected = None if expected is None else parse_digest(expected)
        if limit is not None and limit < 0:
            raise UsageError(f"an upload limit must be 0 bytes or more, not {limit}")
        self._limit = limit
        self._hasher = new_hasher()
        self._size = 0
        try:
            self._fd: int | None
            self._fd, self._tmp = store._new_temp()
        except OSError as exc:
            raise store._write_error(exc) from None

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            raise UsageError(
                f"the upload is larger than the limit of {self._limit} bytes",
                hint="Send a smaller file, or raise the server's upload limit.",
            )
        self._hasher.update(chunk)
        assert self._fd is not None
        try:
            write_all(self._fd, chunk)
        except OSError as exc:
            raise self._store._write_error(exc) from None

    def finish(self) -> str:
        """Check the digest and publish the blob; on any failure nothing is left behind."""
        try:
            digest = format_digest(self._hasher.digest())
            if self._expected is not None and digest != self._expected:
                raise UsageError(
                    f"the uploaded bytes ({self._size} bytes) have digest {digest}, "
                    f"not {self._expected}",
                    hint="The upload was cut short or damaged, or named with the wrong "
                    "digest; send it again.",
                )
            assert self._fd is not None
            try:
                self._store._seal(self._fd)
                self._close()
                self._store._commit(self._tmp, digest)
            except OSError as exc:
                raise self._store._write_error(exc) from None
        except BaseException:
            self.abort()
            raise
        return digest

    def abort(self) -> None:
        self._close()
        discard(self._tmp)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def store_file(
    path: Path,
    put_bytes: Callable[[bytes], str],
    put_large: Callable[[int, int, Digest, Path], None],
    whole_below: int = MMAP_THRESHOLD,
) -> str:
    """``put_file`` for any store: small files read whole, large ones hashed, then handed over.

    Files under ``whole_below`` bytes go to ``put_bytes``; ``put_large(fd,
    size, digest, path)`` stores an open larger file already hashed as
    ``digest`` (unless the store holds it intact). OS errors on the user's
    file become NotFoundError or UsageError naming it.
    """
    try:
        src, size = open_regular(path)
    except OSError as exc:
        raise file_error(exc, path) from None
    try:
        try:
            if size < whole_below:
                data = read_fd(src, size)
            else:
                digest = hash_open(src, size, path)
        except OSError as exc:
            raise file_error(exc, path) from None
        if size < whole_below:
            return put_bytes(data)
        put_large(src, size, digest, path)
        return digest
    finally:
        os.close(src)


def export_verified(
    digest: Digest, dest: Path, fill: Callable[[int], None], bad: Callable[[], IntegrityError]
) -> None:
    """Write a blob to ``dest`` (parents made) with ``fill(fd)``, check it, replace ``dest``.

    What was written is hashed before it is renamed into place; ``bad()`` is
    raised if it does not match ``digest``, and no partial file is left
    either way. ``fill`` copies a local blob in, or downloads one.
    """
    if dest.is_dir():
        raise UsageError(f"cannot export {digest} to {dest}: it is a directory; name a file")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp(dest.parent, f".{dest.name[:100]}.", mode=None)
    except OSError as exc:
        raise _dest_error(exc, dest) from None
    try:
        try:
            fill(fd)
        finally:
            os.close(fd)
        if hash_path(tmp) != digest:
            raise bad()
        os.replace(tmp, dest)
    except BaseException as exc:
        discard(tmp)
        if isinstance(exc, OSError):
            raise _dest_error(exc, dest) from None
        raise


def _dest_error(exc: OSError, dest: Path) -> UsageError:
    return UsageError(f"cannot write {dest}: {exc.strerror or exc}")
