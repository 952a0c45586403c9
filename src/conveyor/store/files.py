"""The store's file handling: private folders and files, temporary files, copies.

Everything Conveyor keeps under its home can hold personal data or
credentials, so what it creates there is private to its user whatever the
umask: folders 0700, files 0600, sealed blobs 0400. Creation sets the mode
explicitly after ``mkdir``/``open``, because a umask can only take bits away
(and a umask such as 0277 would take the owner's own write bit).

>>> private_dir(Path(tmp) / "a" / "b")                   # doctest: +SKIP
PosixPath('/tmp/.../a/b')                                 # a and b are both 0700
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from conveyor.errors import StoreError

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "SEALED_FILE",
    "TEMP_SUFFIX",
    "copy_fd",
    "create_temp",
    "discard",
    "fsync_dir",
    "private_dir",
    "restrict_file",
    "sorted_entries",
    "write_all",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: A finished blob: its owner may read it, nobody may change it in place.
SEALED_FILE = 0o400
TEMP_SUFFIX = ".tmp"
# copy_file_range refuses these combinations of files; a plain copy works.
_NO_FAST_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def private_dir(path: Path | str) -> Path:
    """Create ``path`` and its missing parents as 0700 folders and return it.

    Folders that already exist keep their mode: they belong to the user (a
    home given in CONVEYOR_HOME, say), and Conveyor does not change them.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it at the same moment; it sets its mode
        os.chmod(folder, PRIVATE_DIR)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    return path


def restrict_file(path: Path | str, mode: int = PRIVATE_FILE) -> None:
    """Take group and other permissions away from a file this user owns (absent: no-op)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def create_temp(directory: Path, prefix: str, mode: int | None = PRIVATE_FILE) -> tuple[int, Path]:
    """Create a new, empty, uniquely named file; returns ``(fd, path)``.

    Its mode is exactly ``mode``, or 0666 minus the umask when ``mode`` is None
    (for a file written into the user's own folders, as any tool would).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        path = directory / f"{prefix}{os.urandom(8).hex()}{TEMP_SUFFIX}"
        try:
            fd = os.open(path, flags, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        if mode is not None:
            os.fchmod(fd, mode)
        return fd, path


def discard(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)


def write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_fd(src: int, dst: int) -> None:
    """Copy all of ``src`` (from its start) to ``dst``, in the kernel when it can."""
    os.lseek(src, 0, os.SEEK_SET)
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src, dst, 1 << 30):
                pass
            return
        except OSError as exc:
            if exc.errno not in _NO_FAST_COPY:
                raise
            os.lseek(src, 0, os.SEEK_SET)
            os.lseek(dst, 0, os.SEEK_SET)
            os.ftruncate(dst, 0)
    while chunk := os.read(src, 1 << 20):
        write_all(dst, chunk)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    """A directory's entries by name; none if it does not exist (yet)."""
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot list {directory}: {exc.strerror or exc}") from None
