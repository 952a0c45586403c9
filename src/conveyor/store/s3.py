"""The artifact store in an S3 bucket (AWS, or any S3-compatible server: MinIO, SeaweedFS, Ceph).

``CONVEYOR_ARTIFACT_ROOT=s3://bucket/prefix`` selects it; credentials come
from the usual AWS variables (or profile, or instance role), and
CONVEYOR_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL) names a server other than AWS.
Every blob is the object ``<prefix>/blake3/<64 hex>``, carrying its digest in
the ``x-amz-meta-blake3`` header.

- Writes: a blob of one part (8 MiB) or more is looked for first (HEAD); an
  object of the right size that carries the digest is not uploaded again.
  A smaller blob is sent in one PUT without asking: the HEAD would cost a
  round trip of its own, and an identical object replacing itself changes
  nothing (with a HEAD first, 1 MiB blobs went up at 0.6x boto3's
  upload_file, see docs/benchmarks.md). Larger blobs go up as a multipart
  upload, parts in parallel; a file is hashed again as its parts are read, so
  one that changes meanwhile is refused and its upload aborted.
- Reads: the bytes are hashed before they are handed out; an object changed or
  damaged behind the store's back raises IntegrityError naming it. Large
  objects are fetched as parallel ranges.
- Local state: only a bounded read cache of verified copies
  (:mod:`conveyor.store.cache`, ``$CONVEYOR_HOME/cache/artifacts``, 0700),
  which ``open`` and ``export`` read from and uploads are spooled through.
- Faults: bounded timeouts and retries; a server that does not answer, refused
  credentials and a missing bucket each raise StoreError naming the URL.

>>> store = S3ArtifactStore("s3://conveyor-artifacts/team-a", cache=cache)   # doctest: +SKIP
>>> store.read_json(store.put_json({"auc": 0.93}))                           # doctest: +SKIP
{'auc': 0.93}
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from conveyor.errors import ConfigError, IntegrityError, NotFoundError, StoreError
from conveyor.store.blobs import (
    STALE_TEMP_SECONDS,
    ArtifactInfo,
    GcReport,
    canonical_json,
    parse_json,
)
from conveyor.store.cache import ReadCache
from conveyor.store.digests import (
    ALGORITHM,
    Digest,
    digest_bytes,
    file_error,
    format_digest,
    hash_path,
    new_hasher,
    open_regular,
    parse_digest,
)
from conveyor.store.files import SEALED_FILE, copy_fd, discard
from conveyor.store.reader import VerifyingReader, integrity_error
from conveyor.store.s3_errors import translate
from conveyor.store.s3_transfer import NET_CHUNK, Transfer, abort_upload, download, multipart_upload
from conveyor.store.uploads import StreamingPuts, export_verified, store_file

if TYPE_CHECKING:
    from conveyor.config import Settings

__all__ = ["S3ArtifactStore"]

_MIB = 1 << 20
_META = "blake3"  # the user metadata key that carries an object's digest
_HEX = frozenset("0123456789abcdef")


class S3ArtifactStore(StreamingPuts):
    """Content-addressed blobs under one bucket prefix; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        cache: ReadCache,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        part_size: int = 8 * _MIB,
        concurrency: int = 8,
    ) -> None:
        if not _installed("boto3"):
            raise ConfigError(
                f"CONVEYOR_ARTIFACT_ROOT={url} needs boto3, which is not installed",
                hint="Install the S3 extra: pip install 'conveyor[s3]'.",
            )
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._keys = f"{self.prefix}/{ALGORITHM}/" if self.prefix else f"{ALGORITHM}/"
        self._location = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._cache = cache
        self._endpoint = endpoint_url
        self._region = region
        self._credentials = (access_key, secret_key, session_token)
        self._timeouts = (connect_timeout, read_timeout)
        self._part = part_size
        self._concurrency = concurrency
        self._client_lock = threading.Lock()
        self._client_obj: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ArtifactStore:
        """The bucket store ``settings.artifact_url`` names, its cache under the home."""
        assert settings.artifact_url is not None
        return cls(
            settings.artifact_url,
            cache=ReadCache(settings.cache_dir / "artifacts", settings.artifact_cache_size),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_credentials[0],
            secret_key=settings.s3_credentials[1],
            session_token=settings.s3_credentials[2],
        )

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self._location!r})"

    @property
    def location(self) -> str:
        """``s3://bucket/prefix``."""
        return self._location

    # -- writing -----------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest; an object already holding it is not re-sent."""
        digest = digest_bytes(data)
        if len(data) < self._part or not self._holds(digest, len(data)):
            view = memoryview(data)
            self._upload(digest, len(data), lambda offset, n: bytes(view[offset : offset + n]))
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's content and return its digest, in parts (a large file is never loaded).

        Raises NotFoundError for a missing file, UsageError for one that is not
        a readable regular file, and StoreError if it changed while being sent.
        """
        # Up to one part, the bytes are read once, hashed once and sent in one PUT.
        return store_file(path, self.put_bytes, self._put_large, whole_below=self._part)

    def _put_large(self, src: int, size: int, digest: Digest, path: Path) -> None:
        if not self._holds(digest, size):
            self._upload_fd(src, size, digest, str(path))

    def put_json(self, obj: Any) -> str:
        """Store ``obj`` as canonical JSON (sorted keys, compact, UTF-8): equal values, one blob."""
        return self.put_bytes(canonical_json(obj))

    # -- reading -----------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether an object with this digest is stored (its content is not checked)."""
        return self._head(parse_digest(digest)) is not None

    def info(self, digest: str) -> ArtifactInfo:
        """Size and upload time of a stored blob; NotFoundError if absent."""
        digest = parse_digest(digest)
        head = self._head(digest)
        if head is None:
            raise self._not_found(digest)
        return ArtifactInfo(digest, head["ContentLength"], head["LastModified"].timestamp())

    def read_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest (IntegrityError if they differ)."""
        digest = parse_digest(digest)
        cached = self._cache.get(digest)
        if cached is not None:
            try:
                data = cached.read_bytes()
                if digest_bytes(data) == digest:
                    return data
            except OSError:
                pass  # evicted meanwhile
            self._cache.drop(digest)
        return self._fetch(digest).read_bytes()  # checked as it was fetched

    def read_json(self, digest: str) -> Any:
        """The JSON value stored under ``digest``, verified; UsageError if it is not JSON."""
        return parse_json(self.read_bytes(digest), digest)

    def open(self, digest: str) -> BinaryIO:
        """A binary reader over a verified local copy of the blob (fetched into the cache)."""
        digest = parse_digest(digest)
        fd = os.open(self._local(digest), os.O_RDONLY | os.O_CLOEXEC)
        reader = VerifyingReader(fd, digest, self._url(digest))
        return io.BufferedReader(reader, buffer_size=1 << 16)

    def export(self, digest: str, dest: Path) -> None:
        """Write the blob to ``dest`` (parents created), verified, replacing ``dest`` atomically.

        A cached copy is copied; otherwise the object is downloaded straight to
        ``dest``'s folder (not through the cache: the copy at ``dest`` is the
        one that will be read).
        """
        digest = parse_digest(digest)
        cached = self._cache.get(digest)
        if cached is not None:
            try:
                src = os.open(cached, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass  # evicted meanwhile
            else:
                try:
                    export_verified(
                        digest,
                        Path(dest),
                        lambda fd: copy_fd(src, fd),
                        lambda: integrity_error(digest, cached),
                    )
                    return
                except IntegrityError:
                    self._cache.drop(digest)  # damaged here, not in the bucket: download it
                finally:
                    os.close(src)
        export_verified(
            digest,
            Path(dest),
            lambda fd: self._download(digest, fd),
            lambda: integrity_error(digest, self._url(digest)),
        )

    def verify(self, digest: str) -> None:
        """Re-hash the stored object as it streams in; IntegrityError naming it if it changed."""
        digest = parse_digest(digest)
        hasher = new_hasher()
        with self._call("cannot read", digest):
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"]
            try:
                for chunk in body.iter_chunks(NET_CHUNK):
                    hasher.update(chunk)
            finally:
                body.close()
        if format_digest(hasher.digest()) != digest:
            self._cache.drop(digest)
            raise integrity_error(digest, self._url(digest))

    # -- housekeeping ------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove one blob; NotFoundError if it is not stored."""
        digest = parse_digest(digest)
        if self._head(digest) is None:
            raise self._not_found(digest)
        with self._call("cannot delete from", digest):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(digest))
        self._cache.drop(digest)

    def gc(self, keep: Collection[str], *, dry_run: bool = False) -> GcReport:
        """Remove every blob whose digest is not in ``keep``, and stale multipart uploads.

        ``keep`` is validated first (a malformed digest raises UsageError and
        nothing is removed). As for the folder store, no run may be storing
        blobs it has not recorded yet.
        """
        wanted = {parse_digest(d) for d in keep}
        removed: list[str] = []
        freed = kept = 0
        for blob in self.list():
            if blob.digest in wanted:
                kept += 1
            else:
                removed.append(blob.digest)
                freed += blob.size
        if not dry_run:
            for start in range(0, len(removed), 1000):  # DeleteObjects takes 1000 keys at most
                self._delete_many(removed[start : start + 1000])
        return GcReport(
            removed=len(removed),
            bytes_freed=freed,
            kept=kept,
            stale_temps=self._abort_stale_uploads(dry_run),
            dry_run=dry_run,
            removed_digests=tuple(removed),
        )

    def list(self) -> Iterator[ArtifactInfo]:
        """Every stored blob, in digest order (S3 lists keys in order)."""
        with self._call("cannot list"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._keys
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(self._keys) :]
                    if len(name) == 64 and _HEX.issuperset(name):
                        yield ArtifactInfo(
                            f"{ALGORITHM}:{name}", obj["Size"], obj["LastModified"].timestamp()
                        )

    # -- internals: objects ------------------------------------------------

    @property
    def _client(self) -> Any:
        """The boto3 client, made on first use (importing boto3 takes a noticeable while)."""
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = self._new_client()
            return self._client_obj

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, 2 * self._concurrency),
            # Path-style addressing: S3-compatible servers rarely have a DNS name per bucket.
            s3={"addressing_style": "path"} if self._endpoint else {},
            # Every byte is checked against its BLAKE3 digest; a second checksum costs CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        with self._call("cannot connect to"):
            return boto3.session.Session().client(
                "s3",
                endpoint_url=self._endpoint,
                region_name=self._region or ("us-east-1" if self._endpoint else None),
                aws_access_key_id=self._credentials[0],
                aws_secret_access_key=self._credentials[1],
                aws_session_token=self._credentials[2],
                config=config,
            )

    def _key(self, digest: Digest) -> str:
        return self._keys + digest[len(ALGORITHM) + 1 :]

    def _url(self, digest: Digest) -> str:
        return f"s3://{self.bucket}/{self._key(digest)}"

    def _head(self, digest: Digest) -> dict[str, Any] | None:
        """The object's HEAD response, or None if it does not exist."""
        try:
            with self._call("cannot read", digest, missing_ok=True):
                head: dict[str, Any] = self._client.head_object(
                    Bucket=self.bucket, Key=self._key(digest)
                )
        except _Missing:
            return None
        return head

    def _holds(self, digest: Digest, size: int) -> bool:
        """Whether the stored object is ours and whole: its size, and the digest it carries."""
        head = self._head(digest)
        return (
            head is not None
            and head["ContentLength"] == size
            and head.get("Metadata", {}).get(_META) == digest.partition(":")[2]
        )

    def _not_found(self, digest: Digest) -> NotFoundError:
        return NotFoundError(
            f"artifact {digest} is not in the store at {self._location}",
            hint="Check the digest (`conveyor artifacts ls` lists what is stored).",
        )

    @contextmanager
    def _call(
        self, what: str, digest: str | None = None, missing_ok: bool = False
    ) -> Iterator[None]:
        """Translate boto3's errors into Conveyor's, naming the store (see s3_errors)."""
        try:
            yield
        except Exception as exc:
            error = translate(exc, what, self._location, self._endpoint)
            if error is None:
                raise
            if error == "missing":
                if missing_ok:
                    raise _Missing from None
                raise self._not_found(digest or "") from None
            raise error from None

    # -- internals: upload ---------------------------------------------------

    def _upload(self, digest: Digest, size: int, read: Callable[[int, int], bytes]) -> None:
        """Send ``size`` bytes, read by ``read(offset, n)``, as the object for ``digest``."""
        key = self._key(digest)
        meta = {_META: digest.partition(":")[2]}
        if size <= self._part:
            with self._call("cannot write to"):
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=read(0, size), Metadata=meta
                )
            return
        multipart_upload(self._transfer(), key, meta, size, read, lambda: None)

    def _upload_fd(self, src: int, size: int, digest: Digest, name: str) -> None:
        """Send an open file hashed as ``digest``, hashing it again as its parts are read."""
        hasher = new_hasher()

        def read(offset: int, n: int) -> bytes:
            try:
                data = os.pread(src, n, offset)
            except OSError as exc:
                raise file_error(exc, name) from None
            hasher.update(data)
            return data

        def check() -> None:
            if format_digest(hasher.digest()) != digest:
                raise StoreError(
                    f"{name} changed while it was being stored",
                    hint="Store it again once nothing is writing to it.",
                )

        if size <= self._part:
            data = read(0, size)
            check()
            self._upload(digest, size, lambda offset, n: data)
            return
        meta = {_META: digest.partition(":")[2]}
        multipart_upload(self._transfer(), self._key(digest), meta, size, read, check)

    def _transfer(self) -> Transfer:
        return Transfer(self._client, self.bucket, self._part, self._concurrency, self._call)

    def _abort_upload(self, key: str, upload_id: str) -> None:
        abort_upload(self._client, self.bucket, key, upload_id)

    def _abort_stale_uploads(self, dry_run: bool) -> int:
        """Abort multipart uploads of writers that died (the bucket's own temporary files)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        with self._call("cannot list"):
            answer = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=self._keys)
        stale = [u for u in answer.get("Uploads", ()) if u["Initiated"].timestamp() < cutoff]
        if not dry_run:
            for upload in stale:
                self._abort_upload(upload["Key"], upload["UploadId"])
        return len(stale)

    def _delete_many(self, digests: Sequence[str]) -> None:
        with self._call("cannot delete from"):
            answer = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(d)} for d in digests], "Quiet": True},
            )
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise StoreError(
                f"cannot delete {len(answer['Errors'])} object(s) from the artifact store at "
                f"{self._location}: {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        for digest in digests:
            self._cache.drop(digest)

    # -- internals: the read cache and downloads -------------------------------

    def _local(self, digest: Digest) -> Path:
        """A verified local copy of the blob: the cached one if it still matches, else fetched."""
        cached = self._cache.get(digest)
        if cached is not None:
            try:
                if hash_path(cached) == digest:
                    return cached
            except OSError:
                pass  # evicted meanwhile
            self._cache.drop(digest)
        return self._fetch(digest)

    def _fetch(self, digest: Digest) -> Path:
        """Download the object into the cache, large ones as parallel ranges, and check it."""
        fd, tmp = self._spool()
        try:
            try:
                self._download(digest, fd)
            finally:
                os.close(fd)
            if hash_path(tmp) != digest:
                self._cache.drop(digest)
                raise integrity_error(digest, self._url(digest))
            os.chmod(tmp, SEALED_FILE)
            return self._cache.add(tmp, digest)
        except BaseException:
            discard(tmp)
            raise

    def _download(self, digest: Digest, fd: int) -> None:
        download(self._transfer(), self._key(digest), digest, fd)

    # -- StreamingPuts hooks: uploads are spooled through the read cache ----------

    def _spool(self) -> tuple[int, Path]:
        try:
            return self._cache.new_temp()
        except OSError as exc:
            raise self._write_error(exc) from None

    def _new_temp(self) -> tuple[int, Path]:
        return self._cache.new_temp()

    def _seal(self, fd: int) -> None:
        os.fchmod(fd, SEALED_FILE)

    def _commit(self, tmp: Path, digest: Digest) -> None:
        """Upload a checked spool file (unless the bucket holds it), then keep it as cached."""
        src, size = open_regular(tmp)
        try:
            if size < self._part or not self._holds(digest, size):
                self._upload_fd(src, size, digest, str(tmp))
        finally:
            os.close(src)
        self._cache.add(tmp, digest)

    def _write_error(self, exc: OSError, what: str = "cannot write to") -> StoreError:
        return StoreError(
            f"{what} the artifact store's local cache at {self._cache.root}: {exc.strerror or exc}",
            hint="Check that the folder is writable and the disk has space; "
            "CONVEYOR_HOME sets where it is.",
        )


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without the cost of importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class _Missing(Exception):
    """An object that does not exist, where that is an answer rather than an error."""
