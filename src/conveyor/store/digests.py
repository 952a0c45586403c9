"""Content digests: how Conveyor names bytes, and how it validates a digest a user typed.

A digest is ``"<algorithm>:<hex>"``; today the algorithm is always BLAKE3
(256 bits), chosen because it is several times faster than md5 and sha256 on
this hardware and uses every core on large files (see docs/benchmarks.md).
The prefix lets another algorithm be added later without renaming old blobs.

>>> digest_bytes(b"")
'blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'
>>> parse_digest("blake3:../../etc/passwd")
Traceback (most recent call last):
...
conveyor.errors.UsageError: 'blake3:../../etc/passwd' is not a valid artifact digest
expected 'blake3:' followed by 64 lowercase hexadecimal characters
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from blake3 import blake3

from conveyor.errors import ConveyorError, NotFoundError, UsageError

__all__ = ["ALGORITHM", "Digest", "digest_bytes", "digest_file", "parse_digest"]

Digest = str
ALGORITHM = "blake3"
_HEX_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
_PREFIX = ALGORITHM + ":"

#: Files at least this large are hashed through a memory map on every core;
#: smaller ones are read whole, where one read beats setting up a map and threads.
MMAP_THRESHOLD = 1 << 20


def new_hasher(data: bytes | memoryview = b"") -> blake3:
    """A fresh hasher that uses every core on large updates."""
    return blake3(data, max_threads=blake3.AUTO)


def format_digest(raw: bytes) -> Digest:
    """Turn a raw 32-byte hash into the ``"blake3:<hex>"`` form."""
    return _PREFIX + raw.hex()


def digest_bytes(data: bytes | bytearray | memoryview) -> Digest:
    """The digest of ``data``, as the artifact store would name it."""
    if len(data) >= MMAP_THRESHOLD:
        return _PREFIX + blake3(data, max_threads=blake3.AUTO).hexdigest()
    return _PREFIX + blake3(data).hexdigest()


# Linux returns at most this much from one read(); a shorter read means end of file.
_READ_CAP = 0x7FFFF000


def read_fd(fd: int, size: int) -> bytes:
    """Read a file expected to hold ``size`` bytes, usually in one system call.

    Asking for one byte more than expected means a short read proves end of
    file, so no second call is needed; a file that grew is read to its end.
    """
    want = size + 1
    chunks = []
    while True:
        ask = min(want, _READ_CAP)
        chunk = os.read(fd, ask)
        chunks.append(chunk)
        if len(chunk) < ask:
            break
        want = max(want - len(chunk), 1 << 20)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_regular(path: Path | str) -> tuple[int, int]:
    """Open a regular file for reading and return ``(fd, size)``; OSError as the OS reports it.

    Opened non-blocking, so a named pipe is refused instead of waiting for a writer.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UsageError(f"{path} is {kind}; only regular files can be hashed or stored")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def hash_open(fd: int, size: int, path: Path | str) -> Digest:
    """Digest an open file of ``size`` bytes (``path`` names the same file).

    Large files are memory-mapped and hashed on every core (as ``b3sum``
    does); a file truncated by another process while it is being hashed is
    outside what any digest can give a meaning to.
    """
    if size >= MMAP_THRESHOLD:
        return _PREFIX + new_hasher().update_mmap(path).hexdigest()
    return digest_bytes(read_fd(fd, size))


def hash_path(path: Path | str) -> Digest:
    """Digest a file by path; raises OSError (or UsageError) as :func:`open_regular`."""
    fd, size = open_regular(path)
    try:
        return hash_open(fd, size, path)
    finally:
        os.close(fd)


def file_error(exc: OSError, path: Path | str, verb: str = "read") -> ConveyorError:
    """The Conveyor error for an OS error on a user's file, naming the file."""
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"file {path} does not exist")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"cannot {verb} {path}: it is a directory")
    return UsageError(f"cannot {verb} {path}: {exc.strerror or exc}")


def digest_file(path: Path) -> Digest:
    """The digest of a file's content, without storing it.

    Raises NotFoundError for a missing file and UsageError for anything that
    is not a readable regular file.
    """
    try:
        return hash_path(path)
    except OSError as exc:
        raise file_error(exc, path) from None


def parse_digest(text: str) -> Digest:
    """Validate a digest given by a user or read from a record, and return it.

    Only the exact form ``blake3:<64 lowercase hex>`` is accepted; anything
    else raises UsageError naming it. Every path the store builds goes
    through here first, which is what keeps a digest from escaping the store.
    """
    if (
        isinstance(text, str)
        and len(text) == len(_PREFIX) + _HEX_LENGTH
        and text.startswith(_PREFIX)
        and _HEX.issuperset(text[len(_PREFIX) :])
    ):
        return text
    raise UsageError(
        f"{text!r} is not a valid artifact digest",
        hint=f"expected {_PREFIX!r} followed by {_HEX_LENGTH} lowercase hexadecimal characters",
    )
