"""The artifact store: content-addressed, verified, read-only blobs under one directory.

Every blob is named by the digest of its bytes and lives at
``<root>/blake3/<first 2 hex>/<other 62 hex>``. Writes go to a temporary file
inside the store and are renamed into place, so a reader never sees half a
blob and two processes storing the same content at once both succeed with one
good blob. Reads re-hash and raise IntegrityError rather than hand out bytes
that no longer match their name. Digests from outside are validated by
:func:`parse_digest` before any path is built from them.

>>> store = ArtifactStore(Path(tmp))                         # doctest: +SKIP
>>> d = store.put_json({"auc": 0.93})                        # doctest: +SKIP
>>> store.read_json(d)                                       # doctest: +SKIP
{'auc': 0.93}

Durability: blobs are not fsync'ed by default (``fsync=True`` turns it on).
Measured here, fsync makes storing a 1 GiB file ~3.4x slower and a 4 KiB file
~5x slower; a blob torn by a power cut is still never returned, because every
read verifies it, and storing the same content again replaces a damaged blob.

Repair: content already stored is not written again only when the stored copy
is intact: bytes at hand (``put_bytes``) are compared with it, a large file
whose size matches is checked against its digest, and an upload
(``put_stream``) simply replaces it. A damaged blob is thus replaced, in one
atomic rename, as soon as its good content arrives again.

Buckets: ``ArtifactStore.from_settings`` returns an
:class:`~conveyor.store.s3.S3ArtifactStore` instead when CONVEYOR_ARTIFACT_ROOT
is ``s3://bucket/prefix``; both honour :class:`~conveyor.store.blobs.BlobStore`.

Privacy: the store's folders are 0700 and blobs 0400 whatever the umask, since
an artifact may hold personal data (see :mod:`conveyor.store.files`).
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from conveyor.errors import NotFoundError, StoreError, UsageError
from conveyor.store.blobs import (
    STALE_TEMP_SECONDS,
    ArtifactInfo,
    BlobStore,
    GcReport,
    canonical_json,
    parse_json,
)
from conveyor.store.digests import (
    ALGORITHM,
    Digest,
    digest_bytes,
    digest_file,
    hash_path,
    open_regular,
    parse_digest,
    read_fd,
)
from conveyor.store.files import (
    SEALED_FILE,
    TEMP_SUFFIX,
    copy_fd,
    create_temp,
    discard,
    fsync_dir,
    private_dir,
    sorted_entries,
    write_all,
)
from conveyor.store.reader import VerifyingReader, integrity_error
from conveyor.store.uploads import StreamingPuts, export_verified, store_file

if TYPE_CHECKING:
    from conveyor.config import Settings

__all__ = [
    "ArtifactInfo",
    "ArtifactStore",
    "BlobStore",
    "Digest",
    "GcReport",
    "digest_bytes",
    "digest_file",
    "parse_digest",
]

_HEX = frozenset("0123456789abcdef")


class ArtifactStore(StreamingPuts):
    """Content-addressed blob store rooted at one directory (created on first write)."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._blobs = self.root / ALGORITHM
        # Blob paths are built by string concatenation: pathlib costs more than the hash
        # of a 4 KiB file.
        self._prefix = os.path.join(self.root, ALGORITHM, "")
        self._tmp = self.root / "tmp"

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        """The store CONVEYOR_ARTIFACT_ROOT names: this folder store, or a bucket (``s3://``)."""
        if settings.artifact_url is not None:
            from conveyor.store.s3 import S3ArtifactStore

            return S3ArtifactStore.from_settings(settings)
        return cls(settings.artifact_root)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        """The store's folder."""
        return str(self.root)

    # -- writing -----------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest; an intact stored copy is not rewritten."""
        digest = digest_bytes(data)
        if self._holds_bytes(digest, data):
            return digest
        try:
            fd, tmp = self._new_temp()
            try:
                try:
                    write_all(fd, memoryview(data))
                    self._seal(fd)
                finally:
                    os.close(fd)
                self._commit(tmp, digest)
            except BaseException:
                discard(tmp)
                raise
        except OSError as exc:
            raise self._write_error(exc) from None
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's content and return its digest, streaming (a large file is never loaded).

        The file is hashed first, so content already stored intact costs two
        reads (the file's, and the stored copy's to check it) and no write.
        Raises NotFoundError for a missing file, UsageError for one that is not
        a readable regular file, and StoreError if it changed while being
        copied in.
        """
        return store_file(path, self.put_bytes, self._put_large)

    def _put_large(self, src: int, size: int, digest: Digest, path: Path) -> None:
        if not self._holds_file(digest, size):
            self._copy_in(src, path, digest)

    def _copy_in(self, src: int, path: Path, digest: Digest) -> None:
        """Copy an open large file into the store as ``digest``, checking what was copied."""
        try:
            fd, tmp = self._new_temp()
            try:
                try:
                    copy_fd(src, fd)
                    self._seal(fd)
                finally:
                    os.close(fd)
                # What was copied is what gets stored, so that is what must match.
                if hash_path(tmp) != digest:
                    raise StoreError(
                        f"{path} changed while it was being stored",
                        hint="Store it again once nothing is writing to it.",
                    )
                self._commit(tmp, digest)
            except BaseException:
                discard(tmp)
                raise
        except OSError as exc:
            raise self._write_error(exc, f"cannot copy {path} into") from None

    def put_json(self, obj: Any) -> str:
        """Store ``obj`` as canonical JSON (sorted keys, compact, UTF-8): equal values, one blob."""
        return self.put_bytes(canonical_json(obj))

    # -- reading -----------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored (its content is not checked)."""
        return os.path.isfile(self._path(parse_digest(digest)))

    def info(self, digest: str) -> ArtifactInfo:
        """Size and creation time of a stored blob; NotFoundError if absent."""
        digest = parse_digest(digest)
        st = self._stat(digest)
        return ArtifactInfo(digest=digest, size=st.st_size, created=st.st_mtime)

    def read_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest (IntegrityError if they differ)."""
        digest = parse_digest(digest)
        path = self._path(digest)
        with self._blob_access(digest):
            fd, size = open_regular(path)
            try:
                data = read_fd(fd, size)
            finally:
                os.close(fd)
        if digest_bytes(data) != digest:
            raise integrity_error(digest, path)
        return data

    def read_json(self, digest: str) -> Any:
        """The JSON value stored under ``digest``, verified; UsageError if it is not JSON."""
        return parse_json(self.read_bytes(digest), digest)

    def open(self, digest: str) -> BinaryIO:
        """A binary reader over the blob that raises IntegrityError at end of file on a mismatch."""
        digest = parse_digest(digest)
        path = self._path(digest)
        with self._blob_access(digest):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return io.BufferedReader(VerifyingReader(fd, digest, path), buffer_size=1 << 16)

    def export(self, digest: str, dest: Path) -> None:
        """Copy the blob to ``dest`` (parents created), verified, replacing ``dest`` atomically."""
        digest = parse_digest(digest)
        path = self._path(digest)
        with self._blob_access(digest):
            src, _ = open_regular(path)
        try:
            export_verified(
                digest,
                Path(dest),
                lambda fd: copy_fd(src, fd),
                lambda: integrity_error(digest, path),
            )
        finally:
            os.close(src)

    def verify(self, digest: str) -> None:
        """Re-hash a stored blob; IntegrityError naming the digest and the file if it changed."""
        digest = parse_digest(digest)
        path = self._path(digest)
        with self._blob_access(digest):
            actual = hash_path(path)
        if actual != digest:
            raise integrity_error(digest, path)

    # -- housekeeping ------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove one blob; NotFoundError if it is not stored."""
        digest = parse_digest(digest)
        with self._writing("cannot delete from"), self._blob_access(digest):
            os.unlink(self._path(digest))

    def gc(self, keep: Collection[str], *, dry_run: bool = False) -> GcReport:
        """Remove every blob whose digest is not in ``keep``, and stale temporary files.

        ``keep`` is validated first (a malformed digest raises UsageError and
        nothing is removed). The caller must make sure no run is storing blobs
        it has not recorded yet, or those would be collected too.
        """
        wanted = {parse_digest(d) for d in keep}
        removed: list[str] = []
        freed = kept = 0
        with self._writing("cannot collect garbage in"):
            for blob in self.list():
                if blob.digest in wanted:
                    kept += 1
                    continue
                if not dry_run:
                    try:
                        os.unlink(self._path(blob.digest))
                    except FileNotFoundError:
                        continue  # removed by someone else meanwhile
                removed.append(blob.digest)
                freed += blob.size
            temps, temp_bytes = self._collect_temps(dry_run)
        return GcReport(
            removed=len(removed),
            bytes_freed=freed + temp_bytes,
            kept=kept,
            stale_temps=temps,
            dry_run=dry_run,
            removed_digests=tuple(removed),
        )

    def list(self) -> Iterator[ArtifactInfo]:
        """Every stored blob, in digest order."""
        for shard in sorted_entries(self._blobs):
            if len(shard.name) != 2 or not _HEX.issuperset(shard.name) or not shard.is_dir():
                continue
            for entry in sorted_entries(Path(shard.path)):
                digest = f"{ALGORITHM}:{shard.name}{entry.name}"
                try:
                    parse_digest(digest)
                    st = entry.stat(follow_symlinks=False)
                except (UsageError, FileNotFoundError):
                    continue  # not a blob, or deleted while listing
                if stat.S_ISREG(st.st_mode):
                    yield ArtifactInfo(digest=digest, size=st.st_size, created=st.st_mtime)

    # -- internals ---------------------------------------------------------

    def _path(self, digest: Digest) -> str:
        """Where a (validated) digest's blob lives."""
        start = len(ALGORITHM) + 1
        return self._prefix + digest[start : start + 2] + os.sep + digest[start + 2 :]

    def _holds_bytes(self, digest: Digest, data: bytes) -> bool:
        """Whether the stored blob is exactly ``data`` (compared, since the bytes are at hand)."""
        try:
            fd, size = open_regular(self._path(digest))
        except (OSError, UsageError):
            return False  # absent, or not a file: replaced by the write that follows
        try:
            return size == len(data) and read_fd(fd, size) == data
        except OSError:
            return False
        finally:
            os.close(fd)

    def _holds_file(self, digest: Digest, size: int) -> bool:
        """Whether the stored blob is intact: its size first, then (same size) its digest."""
        path = self._path(digest)
        try:
            if os.stat(path).st_size != size:
                return False  # torn by a crash, or damaged: replaced
            return hash_path(path) == digest
        except (OSError, UsageError):
            return False

    def _stat(self, digest: Digest) -> os.stat_result:
        with self._blob_access(digest):
            return os.stat(self._path(digest))

    def _new_temp(self) -> tuple[int, Path]:
        try:
            return create_temp(self._tmp, "")
        except FileNotFoundError:  # first write: make the store (and the home) private
            private_dir(self._tmp)
            private_dir(self._blobs)
            return create_temp(self._tmp, "")

    def _seal(self, fd: int) -> None:
        """Make a finished temporary file read-only (and durable, if asked) before publishing it."""
        os.fchmod(fd, SEALED_FILE)
        if self._fsync:
            os.fsync(fd)

    def _commit(self, tmp: Path, digest: Digest) -> None:
        """Make ``tmp`` the blob for ``digest`` in one atomic rename."""
        final = self._path(digest)
        # A concurrent writer of the same content may win the race: its blob is identical.
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # first blob in this shard
            private_dir(os.path.dirname(final))
            os.replace(tmp, final)
        if self._fsync:
            fsync_dir(os.path.dirname(final))

    def _collect_temps(self, dry_run: bool) -> tuple[int, int]:
        cutoff = time.time() - STALE_TEMP_SECONDS
        count = size = 0
        for entry in sorted_entries(self._tmp):
            try:
                st = entry.stat(follow_symlinks=False)
                if not entry.name.endswith(TEMP_SUFFIX) or st.st_mtime > cutoff:
                    continue
                if not dry_run:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
            count += 1
            size += st.st_size
        return count, size

    @contextmanager
    def _blob_access(self, digest: Digest) -> Iterator[None]:
        """Translate OS errors on an existing blob into Conveyor's errors."""
        try:
            yield
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {digest} is not in the store at {self.root}",
                hint="Check the digest (`conveyor artifacts ls` lists what is stored).",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot read artifact {digest} at {self._path(digest)}: {exc.strerror or exc}"
            ) from None

    @contextmanager
    def _writing(self, what: str = "cannot write to") -> Iterator[None]:
        """Translate OS errors while writing into a StoreError that names the store."""
        try:
            yield
        except OSError as exc:
            raise self._write_error(exc, what) from None

    def _write_error(self, exc: OSError, what: str = "cannot write to") -> StoreError:
        return StoreError(
            f"{what} the artifact store at {self.root}: {exc.strerror or exc}",
            hint="Check that the directory is writable and the disk has space; "
            "CONVEYOR_ARTIFACT_ROOT sets where the store is.",
        )
