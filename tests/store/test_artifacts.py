"""The artifact store as a user meets it: round trips, de-duplication, corruption, escapes, gc."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pytest
from blake3 import blake3

from conveyor.config import Settings
from conveyor.errors import IntegrityError, NotFoundError, StoreError, UsageError
from conveyor.store.artifacts import (
    ArtifactStore,
    GcReport,
    digest_bytes,
    digest_file,
    parse_digest,
)
from conveyor.store.digests import MMAP_THRESHOLD

SMALL = b"hello, conveyor\n"
# Large enough to take the memory-mapped, multi-threaded and kernel-copy paths.
LARGE = bytes(range(256)) * ((MMAP_THRESHOLD * 3) // 256) + b"tail"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def reference_digest(data: bytes) -> str:
    """The digest computed independently of the store, one thread, in one piece."""
    return "blake3:" + blake3(data).hexdigest()


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


# -- round trips ------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", SMALL, LARGE], ids=["empty", "small", "large"])
def test_put_bytes_round_trip(store: ArtifactStore, data: bytes) -> None:
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
def test_put_file_round_trip(store: ArtifactStore, tmp_path: Path, data: bytes) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(data)

    digest = store.put_file(source)

    assert digest == reference_digest(data) == digest_file(source)
    assert store.read_bytes(digest) == data


def test_blobs_are_read_only_files_in_the_documented_layout(store: ArtifactStore) -> None:
    digest = store.put_bytes(SMALL)
    path = blob_path(store, digest)

    assert path.read_bytes() == SMALL
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert temp_files(store) == []


def test_store_root_is_created_on_first_write_only(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    store = ArtifactStore(root)

    assert list(store.list()) == []
    assert not store.exists(digest_bytes(SMALL))
    assert not root.exists()
    store.put_bytes(SMALL)
    assert root.is_dir()


def test_from_settings_uses_the_artifact_root(settings: Settings) -> None:
    store = ArtifactStore.from_settings(settings)
    digest = store.put_bytes(SMALL)

    assert store.root == settings.artifact_root
    assert blob_path(store, digest).is_file()


def test_put_json_is_canonical_and_round_trips(store: ArtifactStore) -> None:
    a = store.put_json({"b": 1, "a": [1, 2.5], "name": "café"})
    b = store.put_json({"name": "café", "a": [1, 2.5], "b": 1})

    assert a == b
    assert store.read_bytes(a) == '{"a":[1,2.5],"b":1,"name":"café"}'.encode()
    assert store.read_json(a) == {"a": [1, 2.5], "b": 1, "name": "café"}


@pytest.mark.parametrize("value", [float("nan"), {"x": object()}, {1: "a", "b": 2}])
def test_put_json_rejects_values_json_cannot_hold(store: ArtifactStore, value: object) -> None:
    with pytest.raises(UsageError, match="cannot store this value as JSON"):
        store.put_json(value)
    assert list(store.list()) == []


def test_read_json_of_binary_artifact_is_a_usage_error(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"\x89PNG\r\n")
    with pytest.raises(UsageError, match=f"artifact {digest} is not JSON"):
        store.read_json(digest)


def test_list_yields_every_blob_in_digest_order_and_skips_strays(store: ArtifactStore) -> None:
    digests = {store.put_bytes(bytes([i]) * (i + 1)) for i in range(5)}
    (store.root / "blake3" / "README").write_text("not a blob")
    (store.root / "blake3" / "ab").mkdir(exist_ok=True)
    (store.root / "blake3" / "ab" / "short").write_text("not a blob either")

    infos = list(store.list())

    assert [i.digest for i in infos] == sorted(digests)
    assert {i.size for i in infos} == {1, 2, 3, 4, 5}


# -- de-duplication -----------------------------------------------------------


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_storing_existing_content_does_not_rewrite_it(
    store: ArtifactStore, tmp_path: Path, data: bytes
) -> None:
    first = store.put_bytes(data)
    before = blob_path(store, first).stat()
    source = tmp_path / "same.bin"
    source.write_bytes(data)

    assert store.put_bytes(data) == first
    assert store.put_file(source) == first

    after = blob_path(store, first).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [i.digest for i in store.list()] == [first]
    assert temp_files(store) == []


def test_storing_again_repairs_a_blob_of_the_wrong_size(store: ArtifactStore) -> None:
    digest = store.put_bytes(SMALL)
    path = blob_path(store, digest)
    path.chmod(0o644)
    path.write_bytes(SMALL[:3])  # torn, as after a power cut without fsync

    assert store.put_bytes(SMALL) == digest
    store.verify(digest)
    assert store.read_bytes(digest) == SMALL


# -- integrity ------------------------------------------------------------------


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_corrupted_blob_is_reported_never_returned(
    store: ArtifactStore, tmp_path: Path, data: bytes
) -> None:
    digest = store.put_bytes(data)
    path = blob_path(store, digest)
    corrupt(path, offset=len(data) // 2)
    expected = f"artifact {digest} is corrupted.*{path}"

    with pytest.raises(IntegrityError, match=expected):
        store.read_bytes(digest)
    with pytest.raises(IntegrityError, match=expected), store.open(digest) as reader:
        reader.read()
    with pytest.raises(IntegrityError, match=expected):
        store.verify(digest)
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(IntegrityError, match=expected):
        store.export(digest, dest)
    assert list(dest.parent.iterdir()) == []  # no partial file, no temp left behind


def test_open_raises_at_end_of_file_not_before(store: ArtifactStore) -> None:
    digest = store.put_bytes(LARGE)
    corrupt(blob_path(store, digest), offset=len(LARGE) - 1)

    def read_to_end(reader: BinaryIO) -> None:
        while reader.read(1 << 16):
            pass

    with store.open(digest) as reader:
        assert reader.read(1000) == LARGE[:1000]
        with pytest.raises(IntegrityError):
            read_to_end(reader)


def test_open_verifies_even_when_the_reader_seeks(store: ArtifactStore) -> None:
    digest = store.put_bytes(LARGE)
    with store.open(digest) as reader:
        reader.seek(-4, os.SEEK_END)
        assert reader.read() == b"tail"
        reader.seek(10)
        assert reader.read(5) == LARGE[10:15]

    corrupt(blob_path(store, digest), offset=5)
    with store.open(digest) as reader:
        reader.seek(-4, os.SEEK_END)  # bytes skipped over are hashed too
        with pytest.raises(IntegrityError):
            reader.read()


def test_open_reads_a_good_blob_in_pieces(store: ArtifactStore) -> None:
    digest = store.put_bytes(LARGE)
    pieces = []
    with store.open(digest) as reader:
        while piece := reader.read(12345):
            pieces.append(piece)
    assert b"".join(pieces) == LARGE


# -- export -------------------------------------------------------------------------


def test_export_writes_a_verified_writable_copy(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(LARGE)
    dest = tmp_path / "deep" / "er" / "model.bin"

    store.export(digest, dest)

    assert dest.read_bytes() == LARGE
    assert os.access(dest, os.W_OK)
    assert stat.S_IMODE(dest.stat().st_mode) & 0o200
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_export_replaces_an_existing_file(store: ArtifactStore, tmp_path: Path) -> None:
    dest = tmp_path / "out.txt"
    dest.write_text("old content that is longer than the new one")

    store.export(store.put_bytes(SMALL), dest)

    assert dest.read_bytes() == SMALL


def test_export_to_a_directory_is_a_usage_error(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(SMALL)
    with pytest.raises(UsageError, match="is a directory"):
        store.export(digest, tmp_path)


# -- missing and malformed digests --------------------------------------------------

ABSENT = digest_bytes(b"never stored")


@pytest.mark.parametrize("operation", ["info", "read_bytes", "open", "verify", "delete", "export"])
def test_missing_digest_is_not_found_and_named(
    store: ArtifactStore, tmp_path: Path, operation: str
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
    store: ArtifactStore, tmp_path: Path, bad: str
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


def test_put_file_of_missing_path_names_it(store: ArtifactStore, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(NotFoundError, match=f"file {missing} does not exist"):
        store.put_file(missing)
    with pytest.raises(NotFoundError, match=f"file {missing} does not exist"):
        digest_file(missing)


def test_put_file_of_a_directory_is_a_usage_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"{tmp_path} is a directory"):
        store.put_file(tmp_path)
    with pytest.raises(UsageError, match=f"{tmp_path} is a directory"):
        digest_file(tmp_path)


def test_put_file_of_a_named_pipe_is_refused_without_waiting(
    store: ArtifactStore, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=f"{fifo} is not a regular file"):
        store.put_file(fifo)
    with pytest.raises(UsageError, match=f"{fifo} is not a regular file"):
        digest_file(fifo)


def test_unwritable_store_is_a_store_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "occupied"
    root.write_text("a file where the store should be")
    store = ArtifactStore(root)

    with pytest.raises(StoreError, match=f"cannot write to the artifact store at {root}"):
        store.put_bytes(SMALL)
    with pytest.raises(StoreError, match="cannot read artifact"):
        store.read_bytes(digest_bytes(SMALL))
    with pytest.raises(StoreError, match=f"cannot list {root}"):
        list(store.list())


def test_large_file_is_streamed_not_loaded(store: ArtifactStore, tmp_path: Path) -> None:
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
    assert peak < 4 * 1024 * 1024
    assert store.info(digest).size == size
    assert digest_file(dest) == digest


def test_sparse_file_is_stored_like_any_other(store: ArtifactStore, tmp_path: Path) -> None:
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


def test_delete_removes_one_blob(store: ArtifactStore) -> None:
    keep = store.put_bytes(b"keep")
    gone = store.put_bytes(b"gone")

    store.delete(gone)

    assert not store.exists(gone)
    assert store.exists(keep)
    with pytest.raises(NotFoundError):
        store.delete(gone)


def test_gc_keeps_exactly_keep(store: ArtifactStore) -> None:
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


def test_gc_with_nothing_kept_empties_the_store(store: ArtifactStore) -> None:
    for i in range(3):
        store.put_bytes(bytes([i]))
    assert store.gc([]).removed == 3
    assert list(store.list()) == []


def test_gc_removes_stale_temp_files_only(store: ArtifactStore) -> None:
    store.put_bytes(SMALL)
    tmp = store.root / "tmp"
    stale = tmp / "deadbeef.tmp"
    stale.write_bytes(b"x" * 100)
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    fresh = tmp / "cafebabe.tmp"  # a writer may still be busy with this one
    fresh.write_bytes(b"y")

    report = store.gc([digest_bytes(SMALL)])

    assert (report.removed, report.kept, report.stale_temps) == (0, 1, 1)
    assert report.bytes_freed == 100
    assert not stale.exists()
    assert fresh.exists()


# -- concurrency ------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from conveyor.store.artifacts import ArtifactStore

    store = ArtifactStore(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()  # every writer starts when the test says go
    digests = {store.put_file(Path(sys.argv[2])) for _ in range(3)}
    digests |= {store.put_bytes(Path(sys.argv[3]).read_bytes()) for _ in range(3)}
    print(" ".join(sorted(digests)), flush=True)
    """
)


def test_concurrent_writers_of_the_same_content_leave_one_good_blob(
    store: ArtifactStore, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(LARGE * 3)
    small = tmp_path / "small.bin"
    small.write_bytes(SMALL * 1000)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), str(big), str(small)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for w in writers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "ready"
        for w in writers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        outputs = [w.communicate(timeout=120)[0] for w in writers]
    finally:
        for w in writers:
            w.kill()
            w.wait()

    assert [w.returncode for w in writers] == [0] * 4
    expected = " ".join(sorted([digest_file(big), digest_file(small)]))
    assert [o.strip() for o in outputs] == [expected] * 4
    assert sorted(i.digest for i in store.list()) == expected.split()
    for digest in expected.split():
        store.verify(digest)
    assert temp_files(store) == []


# -- import cost ----------------------------------------------------------------------------


def test_module_imports_only_stdlib_blake3_and_conveyor_basics() -> None:
    code = (
        "import sys; before = set(sys.modules); import conveyor.store.artifacts; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    outside = {
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in {"blake3", "conveyor"}
    }
    ours = {name for name in loaded if name.startswith("conveyor.")}

    assert outside == set()
    assert ours <= {
        "conveyor._version",  # the package root's one import
        "conveyor.errors",
        "conveyor.store",
        "conveyor.store.artifacts",
        "conveyor.store.digests",
        "conveyor.store.files",
        "conveyor.store.reader",
    }
