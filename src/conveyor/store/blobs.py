"""The artifact store's contract: what each implementation (folder, S3) offers the rest of Conveyor.

Blobs are named by the digest of their bytes (:mod:`conveyor.store.digests`);
every read is verified against that name, so a changed or damaged blob raises
IntegrityError instead of being returned. Two implementations exist, one
module each: :class:`~conveyor.store.artifacts.ArtifactStore` (a local
folder, the default) and :class:`~conveyor.store.s3.S3ArtifactStore` (a
bucket and prefix). ``ArtifactStore.from_settings`` picks one from
``CONVEYOR_ARTIFACT_ROOT``.

>>> store = ArtifactStore.from_settings(settings)           # doctest: +SKIP
>>> store.location                                          # doctest: +SKIP
's3://conveyor-artifacts/team-a'
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = ["ArtifactInfo", "BlobStore", "GcReport"]

#: A temporary file (or unfinished multipart upload) untouched for this long belongs to a
#: writer that died.
STALE_TEMP_SECONDS = 3600.0


@dataclass(frozen=True)
class ArtifactInfo:
    """One blob in the store."""

    digest: str
    size: int
    #: When the blob was first stored (the file's or object's modification time), epoch seconds.
    created: float


@dataclass(frozen=True)
class GcReport:
    """What a garbage collection removed (or, for a dry run, would remove)."""

    removed: int
    bytes_freed: int
    kept: int
    #: Temporary files (or multipart uploads) left by writers that died, removed with the blobs.
    stale_temps: int = 0
    dry_run: bool = False
    removed_digests: tuple[str, ...] = ()


class BlobStore(Protocol):
    """A content-addressed, verified blob store; see the module docstring."""

    @property
    def location(self) -> str:
        """Where the blobs live, as a user would write it: a folder or ``s3://bucket/prefix``."""
        ...

    def put_bytes(self, data: bytes) -> str: ...

    def put_file(self, path: Path) -> str: ...

    def put_stream(
        self, chunks: Iterable[bytes], expected_digest: str | None = None, *, limit: int | None
    ) -> str: ...

    async def put_stream_async(
        self,
        chunks: AsyncIterable[bytes],
        expected_digest: str | None = None,
        *,
        limit: int | None,
    ) -> str: ...

    def put_json(self, obj: Any) -> str: ...

    def exists(self, digest: str) -> bool: ...

    def info(self, digest: str) -> ArtifactInfo: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def read_json(self, digest: str) -> Any: ...

    def open(self, digest: str) -> BinaryIO: ...

    def export(self, digest: str, dest: Path) -> None: ...

    def verify(self, digest: str) -> None: ...

    def delete(self, digest: str) -> None: ...

    def gc(self, keep: Collection[str], *, dry_run: bool = False) -> GcReport: ...

    def list(self) -> Iterator[ArtifactInfo]: ...


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical JSON (sorted keys, compact, UTF-8): equal values, equal bytes."""
    import json

    from conveyor.errors import UsageError

    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot store this value as JSON: {exc}") from None
    return text.encode("utf-8")


def parse_json(data: bytes, digest: str) -> Any:
    """The JSON value in a blob's bytes; UsageError naming the digest if it is not JSON."""
    import json

    from conveyor.errors import UsageError

    try:
        return json.loads(data)
    except ValueError:
        raise UsageError(f"artifact {digest} is not JSON") from None
