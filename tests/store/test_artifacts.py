"""The artifact store as a user meets it: round trips, de-duplication, corruption, escapes, gc.

Every test here runs on each store (the ``store`` fixture: a folder, and an S3 bucket).
"""

from __future__ import annotations

import os
import re
import stat
import time
import tracemalloc
from pathlib import Path

import pytest
from blake3 import blake3

from conveyor.errors import IntegrityError, NotFoundError, UsageError
from conveyor.store.artifacts import (
    ArtifactStore,
    GcReport,
    digest_bytes,
    digest_file,
    parse_digest,
)
from conveyor.store.blobs import BlobStore
from conveyor.store.digests import MMAP_THRESHOLD
from tests.store.backends import S3_CONCURRENCY, S3_PART, blob_name, corrupt_blob, replace_blob

SMALL = b"hello, conveyor\n"
# Large enough to take the memory-mapped, multi-threaded and kernel-copy paths.
LARGE = bytes(range(256)) * ((MMAP_THRESHOLD * 3) // 256) + b"tail"


def reference_digest(data: bytes) -> str:
    """The digest computed independently of the store, one thread, in one piece."""
    return "blake3:" + blake3(data).hexdigest()


# -- round trips ------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", SMALL, LARGE], ids=["empty", "small", "large"])
def test_put_bytes_round_trip(store: BlobStore, data: bytes) -> None:
    digest = store.put_bytes(data)

    assert digest == reference_digest(data) == digest_bytes(data)
    assert store.exists(digest)
    assert store.read_bytes(digest) == data
    with store.open(digest) as reader:
        assert reader.read() == data
    info = store.info(digest)
    assert (info.digest, info.size) == (digest, len(data))
    assert abs(info.created - time.time()) < 3600


@pytest.mark.parametrize("data", [b"", SMALL, LARGE], ids=["empty", "small", "large"])
def test_put_file_round_trip(store: BlobStore, tmp_path: Path, data: bytes) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(data)

    digest = store.put_file(source)

    assert digest == reference_digest(data) == digest_file(source)
    assert store.read_bytes(digest) == data


def test_put_json_is_canonical_and_round_trips(store: BlobStore) -> None:
    a = store.put_json({"b": 1, "a": [1, 2.5], "name": "café"})
    b = store.put_json({"name": "café", "a": [1, 2.5], "b": 1})

    assert a == b
    assert store.read_bytes(a) == '{"a":[1,2.5],"b":1,"name":"café"}'.encode()
    assert store.read_json(a) == {"a": [1, 2.5], "b": 1, "name": "café"}


@pytest.mark.parametrize("value", [float("nan"), {"x": object()}, {1: "a", "b": 2}])
def test_put_json_rejects_values_json_cannot_hold(store: BlobStore, value: object) -> None:
    with pytest.raises(UsageError, match="cannot store this value as JSON"):
        store.put_json(value)
    assert list(store.list()) == []


def test_read_json_of_binary_artifact_is_a_usage_error(store: BlobStore) -> None:
    digest = store.put_bytes(b"\x89PNG\r\n")
    with pytest.raises(UsageError, match=f"artifact {digest} is not JSON"):
        store.read_json(digest)


# -- de-duplication -----------------------------------------------------------


def test_storing_again_repairs_a_blob_of_the_wrong_size(store: BlobStore) -> None:
    digest = store.put_bytes(SMALL)
    replace_blob(store, digest, SMALL[:3])  # torn, as after a power cut without fsync

    assert store.put_bytes(SMALL) == digest
    store.verify(digest)
    assert store.read_bytes(digest) == SMALL


# -- integrity ------------------------------------------------------------------


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_corrupted_blob_is_reported_never_returned(
    store: BlobStore, tmp_path: Path, data: bytes
) -> None:
    digest = store.put_bytes(data)
    corrupt_blob(store, digest, offset=len(data) // 2)
    expected = f"artifact {digest} is corrupted.*{re.escape(blob_name(store, digest))}"

    with pytest.raises(IntegrityError, match=expected):
        store.read_bytes(digest)
    with pytest.raises(IntegrityError, match=expected), store.open(digest) as reader:
        reader.read()
    with pytest.raises(IntegrityError, match=expected):
        store.verify(digest)
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(IntegrityError, match=expected):
        store.export(digest, dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # nothing left behind


def test_open_reads_a_good_blob_in_pieces(store: BlobStore) -> None:
    digest = store.put_bytes(LARGE)
    pieces = []
    with store.open(digest) as reader:
        while piece := reader.read(12345):
            pieces.append(piece)
    assert b"".join(pieces) == LARGE


# -- export -------------------------------------------------------------------------


def test_export_writes_a_verified_writable_copy(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(LARGE)
    dest = tmp_path / "deep" / "er" / "model.bin"

    store.export(digest, dest)

    assert dest.read_bytes() == LARGE
    assert os.access(dest, os.W_OK)
    assert stat.S_IMODE(dest.stat().st_mode) & 0o200
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_export_replaces_an_existing_file(store: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "out.txt"
    dest.write_text("old content that is longer than the new one")

    store.export(store.put_bytes(SMALL), dest)

    assert dest.read_bytes() == SMALL


def test_export_to_a_directory_is_a_usage_error(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(SMALL)
    with pytest.raises(UsageError, match="is a directory"):
        store.export(digest, tmp_path)


# -- missing and malformed digests --------------------------------------------------

ABSENT = digest_bytes(b"never stored")


@pytest.mark.parametrize("operation", ["info", "read_bytes", "open", "verify", "delete", "export"])
def test_missing_digest_is_not_found_and_named(
    store: BlobStore, tmp_path: Path, operation: str
) -> None:
    store.put_bytes(SMALL)
    call = getattr(store, operation)
    args = (ABSENT, tmp_path / "out") if operation == "export" else (ABSENT,)
    with pytest.raises(NotFoundError, match=f"artifact {ABSENT} is not in the store"):
        call(*args)
    assert not (tmp_path / "out").exists()


BAD_DIGESTS = [
    "",
    "../../etc/passwd",
    "/etc/passwd",
    "blake3:../../../../etc/passwd",
    "blake3:/" + "a" * 63,
    "blake3:" + "a" * 63,
    "blake3:" + "a" * 65,
    "blake3:" + "A" * 64,
    "blake3:" + "g" * 64,
    "blake3:" + "a" * 62 + "/.",
    "blake3:" + "a" * 63 + "\n",
    "sha256:" + "a" * 64,
    "a" * 64,
    " blake3:" + "a" * 63,
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_malformed_digests_are_rejected_before_any_path_is_built(
    store: BlobStore, tmp_path: Path, bad: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    store.put_bytes(SMALL)

    with pytest.raises(UsageError, match="is not a valid artifact digest") as caught:
        parse_digest(bad)
    assert repr(bad) in str(caught.value)
    for operation in ("exists", "info", "read_bytes", "read_json", "open", "verify", "delete"):
        with pytest.raises(UsageError, match="is not a valid artifact digest"):
            getattr(store, operation)(bad)
    with pytest.raises(UsageError, match="is not a valid artifact digest"):
        store.export(bad, tmp_path / "out")
    with pytest.raises(UsageError, match="is not a valid artifact digest"):
        store.gc([bad])
    assert victim.read_text() == "keep me"
    assert len(list(store.list())) == 1


def test_parse_digest_accepts_the_exact_form() -> None:
    digest = digest_bytes(SMALL)
    assert parse_digest(digest) == digest


# -- putting files: errors and streaming ------------------------------------------------


def test_put_file_of_missing_path_names_it(store: BlobStore, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(NotFoundError, match=f"file {missing} does not exist"):
        store.put_file(missing)
    with pytest.raises(NotFoundError, match=f"file {missing} does not exist"):
        digest_file(missing)


def test_put_file_of_a_directory_is_a_usage_error(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"{tmp_path} is a directory"):
        store.put_file(tmp_path)
    with pytest.raises(UsageError, match=f"{tmp_path} is a directory"):
        digest_file(tmp_path)


def test_put_file_of_a_named_pipe_is_refused_without_waiting(
    store: BlobStore, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=f"{fifo} is not a regular file"):
        store.put_file(fifo)
    with pytest.raises(UsageError, match=f"{fifo} is not a regular file"):
        digest_file(fifo)


def test_large_file_is_streamed_not_loaded(store: BlobStore, tmp_path: Path) -> None:
    size = 48 * 1024 * 1024
    source = tmp_path / "big.bin"
    expected = blake3()
    block = os.urandom(1 << 20)
    with source.open("wb") as f:
        for i in range(size // len(block)):
            chunk = block[i:] + block[:i]
            expected.update(chunk)
            f.write(chunk)

    tracemalloc.start()
    try:
        digest = store.put_file(source)
        dest = tmp_path / "exported.bin"
        store.export(digest, dest)
        store.verify(digest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest == "blake3:" + expected.hexdigest()
    # The folder store copies in the kernel; the bucket store holds the parts in flight (and
    # botocore may hold a part it is sending a second time): never the whole file.
    folder = isinstance(store, ArtifactStore)
    bound = 4 * 1024 * 1024 if folder else 2 * (S3_CONCURRENCY + 1) * S3_PART
    assert peak < bound
    assert store.info(digest).size == size
    assert digest_file(dest) == digest


def test_sparse_file_is_stored_like_any_other(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "sparse.bin"
    with source.open("wb") as f:
        f.truncate(20 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b"island")

    digest = store.put_file(source)

    assert digest == digest_file(source)
    with store.open(digest) as reader:
        reader.seek(10 * 1024 * 1024)
        assert reader.read(6) == b"island"


# -- delete and gc ------------------------------------------------------------------------


def test_delete_removes_one_blob(store: BlobStore) -> None:
    keep = store.put_bytes(b"keep")
    gone = store.put_bytes(b"gone")

    store.delete(gone)

    assert not store.exists(gone)
    assert store.exists(keep)
    with pytest.raises(NotFoundError):
        store.delete(gone)


def test_gc_keeps_exactly_keep(store: BlobStore) -> None:
    digests = [store.put_bytes(f"blob {i}".encode() * (i + 1)) for i in range(6)]
    keep = digests[::2]
    doomed = digests[1::2]
    expected_bytes = sum(store.info(d).size for d in doomed)

    preview = store.gc(keep, dry_run=True)
    assert preview == GcReport(
        removed=3,
        bytes_freed=expected_bytes,
        kept=3,
        dry_run=True,
        removed_digests=tuple(sorted(doomed)),
    )
    assert {i.digest for i in store.list()} == set(digests)

    report = store.gc(keep)
    assert (report.removed, report.bytes_freed, report.kept) == (3, expected_bytes, 3)
    assert {i.digest for i in store.list()} == set(keep)
    for digest in keep:
        store.verify(digest)


def test_gc_with_nothing_kept_empties_the_store(store: BlobStore) -> None:
    for i in range(3):
        store.put_bytes(bytes([i]))
    assert store.gc([]).removed == 3
    assert list(store.list()) == []
