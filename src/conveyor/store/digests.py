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
from typing import Any

from blake3 import blake3

from conveyor.errors import NotFoundError, UsageError

__all__ = ["ALGORITHM", "Digest", "digest_bytes", "digest_file", "parse_digest"]

Digest = str
ALGORITHM = "blake3"
_HEX_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
_PREFIX = ALGORITHM + ":"

#: Files at least this large are hashed through a memory map on every core;
#: smaller ones are read whole, where one read beats setting up a map and threads.
MMAP_THRESHOLD = 1 << 20


def new_hasher(data: bytes | memoryview = b"") -> Any:
    """A fresh hasher that uses every core on large updates."""
    return blake3(data, max_threads=blake3.AUTO)


def format_digest(raw: bytes) -> Digest:
    """Turn a raw 32-byte hash into the ``"blake3:<hex>"`` form."""
    return _PREFIX + raw.hex()


def digest_bytes(data: bytes | bytearray | memoryview) -> Digest:
    """The digest of ``data``, as the artifact store would name it."""
    return format_digest(blake3(data, max_threads=blake3.AUTO).digest())


def read_small(path: Path | str) -> bytes:
    """Read a whole file with the fewest system calls (open, fstat, read, close)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]
        # The file may have grown since fstat: keep reading until end of file.
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)


def hash_path(path: Path | str, size: int) -> Digest:
    """Digest a file known to be ``size`` bytes; raises OSError as the OS reports it.

    Large files are memory-mapped and hashed on every core (like ``b3sum``);
    a file truncated by another process while it is being hashed is outside
    what any digest can give a meaning to.
    """
    if size >= MMAP_THRESHOLD:
        return format_digest(new_hasher().update_mmap(path).digest())
    return digest_bytes(read_small(path))


def digest_file(path: Path) -> Digest:
    """The digest of a file's content, without storing it.

    Raises NotFoundError for a missing file and UsageError for anything that
    is not a readable regular file.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is not a regular file; only files have a digest")
        return hash_path(path, st.st_size)
    except FileNotFoundError:
        raise NotFoundError(f"file {path} does not exist") from None
    except PermissionError:
        raise UsageError(f"cannot read {path}: permission denied") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory; only files have a digest") from None


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
