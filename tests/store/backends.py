"""The artifact stores the store's tests run on, and how a test damages a blob behind their back.

The same tests run on the folder store and on the S3 store (a SeaweedFS
bucket). Damage is done the way it happens to each: a byte flipped on disk
for the folder; for the bucket, the object overwritten through the S3 API by
another client (which, like any such writer, does not carry the store's
digest header), read afterwards by a machine with an empty cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.store.artifacts import ArtifactStore
from conveyor.store.blobs import BlobStore
from conveyor.store.cache import ReadCache
from conveyor.store.s3 import S3ArtifactStore

__all__ = [
    "S3_PART",
    "blob_name",
    "blob_path",
    "corrupt",
    "corrupt_blob",
    "leftovers",
    "make_store",
    "replace_blob",
    "temp_files",
]

#: Parts of the test bucket store: S3's smallest, so LARGE blobs take the multipart path.
S3_PART = 5 * 1024 * 1024
S3_CONCURRENCY = 2


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobStore:
    """A fresh, empty store of ``kind`` ("folder" or "s3")."""
    if kind == "folder":
        return ArtifactStore(tmp_path / "artifacts")
    server = request.getfixturevalue("seaweedfs")
    return S3ArtifactStore(
        request.getfixturevalue("s3_url"),
        cache=ReadCache(tmp_path / "cache", 64 * 1024 * 1024),
        endpoint_url=server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        part_size=S3_PART,
        concurrency=S3_CONCURRENCY,
    )


def blob_path(store: ArtifactStore, digest: str) -> Path:
    hexd = digest.removeprefix("blake3:")
    return store.root / "blake3" / hexd[:2] / hexd[2:]


def corrupt(path: Path, offset: int = 0) -> None:
    """Flip one byte of a blob file, as a disk fault or a careless edit would."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def temp_files(store: ArtifactStore) -> list[Path]:
    tmp = store.root / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def blob_name(store: BlobStore, digest: str) -> str:
    """How an error names the blob: its file, or its object's URL."""
    if isinstance(store, ArtifactStore):
        return str(blob_path(store, digest))
    assert isinstance(store, S3ArtifactStore)
    return store._url(digest)


def replace_blob(store: BlobStore, digest: str, data: bytes) -> None:
    """Make the stored blob hold ``data`` instead, behind the store's back."""
    if isinstance(store, ArtifactStore):
        path = blob_path(store, digest)
        path.chmod(0o644)
        path.write_bytes(data)
        return
    assert isinstance(store, S3ArtifactStore)
    store._client.put_object(Bucket=store.bucket, Key=store._key(digest), Body=data)
    store._cache.drop(digest)


def corrupt_blob(store: BlobStore, digest: str, offset: int = 0) -> None:
    """Flip one byte of a stored blob, behind the store's back."""
    if isinstance(store, ArtifactStore):
        corrupt(blob_path(store, digest), offset)
        return
    assert isinstance(store, S3ArtifactStore)
    answer = store._client.get_object(Bucket=store.bucket, Key=store._key(digest))
    data = bytearray(answer["Body"].read())
    data[offset] ^= 0xFF
    replace_blob(store, digest, bytes(data))


def leftovers(store: BlobStore) -> list[str]:
    """What a failed or finished write left behind: temporary files, unfinished uploads."""
    if isinstance(store, ArtifactStore):
        return [str(p) for p in temp_files(store)]
    assert isinstance(store, S3ArtifactStore)
    tmp = store._cache.root / "tmp"
    left = [str(p) for p in tmp.iterdir()] if tmp.exists() else []
    answer = store._client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return left + [u["Key"] for u in answer.get("Uploads", ())]
