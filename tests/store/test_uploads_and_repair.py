"""Uploads by digest (``put_stream``) and the repair of damaged blobs by good content."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conveyor.errors import IntegrityError, UsageError
from conveyor.store.artifacts import digest_bytes
from conveyor.store.blobs import BlobStore
from tests.store.backends import corrupt_blob, leftovers
from tests.store.test_artifacts import LARGE, SMALL


def pieces(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def async_pieces(data: bytes) -> AsyncIterator[bytes]:
    for piece in pieces(data):
        yield piece


# -- put_stream -------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", SMALL, LARGE], ids=["empty", "small", "large"])
def test_put_stream_stores_the_chunks_under_their_digest(store: BlobStore, data: bytes) -> None:
    digest = store.put_stream(pieces(data), digest_bytes(data), limit=len(data))

    assert digest == digest_bytes(data)
    assert store.read_bytes(digest) == data
    assert leftovers(store) == []


def test_put_stream_without_an_expected_digest_names_the_bytes(store: BlobStore) -> None:
    assert store.put_stream(pieces(LARGE), limit=None) == digest_bytes(LARGE)


def test_put_stream_refuses_bytes_over_the_limit_and_keeps_nothing(
    store: BlobStore,
) -> None:
    read: list[int] = []

    def counted() -> Iterator[bytes]:
        for piece in pieces(LARGE):
            read.append(len(piece))
            yield piece

    with pytest.raises(UsageError, match="larger than the limit of 100000 bytes"):
        store.put_stream(counted(), digest_bytes(LARGE), limit=100_000)

    assert sum(read) < 200_000  # stopped as soon as the limit was passed
    assert not store.exists(digest_bytes(LARGE))
    assert leftovers(store) == []


def test_put_stream_refuses_a_digest_mismatch_and_keeps_nothing(store: BlobStore) -> None:
    claimed = digest_bytes(b"something else")

    with pytest.raises(UsageError) as caught:
        store.put_stream(pieces(SMALL), claimed, limit=None)

    assert f"have digest {digest_bytes(SMALL)}, not {claimed}" in str(caught.value)
    assert list(store.list()) == []
    assert leftovers(store) == []


def test_put_stream_keeps_nothing_when_the_sender_fails(store: BlobStore) -> None:
    def broken() -> Iterator[bytes]:
        yield SMALL
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(broken(), digest_bytes(SMALL), limit=None)

    assert list(store.list()) == []
    assert leftovers(store) == []


def test_put_stream_rejects_a_malformed_digest_before_reading(store: BlobStore) -> None:
    with pytest.raises(UsageError, match="not a valid artifact digest"):
        store.put_stream(pieces(SMALL), "blake3:../../etc/passwd", limit=None)
    assert leftovers(store) == []


def test_put_stream_async_reads_an_async_body(store: BlobStore) -> None:
    digest = asyncio.run(
        store.put_stream_async(async_pieces(LARGE), digest_bytes(LARGE), limit=len(LARGE))
    )

    assert digest == digest_bytes(LARGE)
    assert store.read_bytes(digest) == LARGE


def test_put_stream_async_refuses_a_mismatch_and_keeps_nothing(store: BlobStore) -> None:
    with pytest.raises(UsageError, match="not blake3:"):
        asyncio.run(store.put_stream_async(async_pieces(SMALL), digest_bytes(LARGE), limit=None))
    assert list(store.list()) == []
    assert leftovers(store) == []


# -- repair: storing good content replaces a damaged blob --------------------------


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_put_bytes_repairs_a_corrupted_blob_of_the_right_size(
    store: BlobStore, data: bytes
) -> None:
    digest = store.put_bytes(data)
    corrupt_blob(store, digest, offset=len(data) // 2)

    assert store.put_bytes(data) == digest

    assert store.read_bytes(digest) == data
    assert leftovers(store) == []


def test_put_file_repairs_a_corrupted_large_blob(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(LARGE)
    digest = store.put_file(source)
    corrupt_blob(store, digest, offset=len(LARGE) - 1)

    assert store.put_file(source) == digest

    store.verify(digest)
    assert store.read_bytes(digest) == LARGE


def test_put_stream_repairs_a_corrupted_blob(store: BlobStore) -> None:
    digest = store.put_bytes(SMALL)
    corrupt_blob(store, digest)
    with pytest.raises(IntegrityError):
        store.verify(digest)

    store.put_stream(pieces(SMALL), digest, limit=None)

    assert store.read_bytes(digest) == SMALL
