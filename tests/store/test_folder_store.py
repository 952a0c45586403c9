"""The folder store's own behaviour: its layout on disk, file modes, temporary files, processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from conveyor.config import Settings
from conveyor.errors import IntegrityError, StoreError
from conveyor.store.artifacts import ArtifactStore, digest_bytes, digest_file
from tests.store.backends import blob_path, corrupt, temp_files
from tests.store.test_artifacts import LARGE, SMALL


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


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

    assert isinstance(store, ArtifactStore)

    assert store.root == settings.artifact_root
    assert blob_path(store, digest).is_file()


def test_list_yields_every_blob_in_digest_order_and_skips_strays(store: ArtifactStore) -> None:
    digests = {store.put_bytes(bytes([i]) * (i + 1)) for i in range(5)}
    (store.root / "blake3" / "README").write_text("not a blob")
    (store.root / "blake3" / "ab").mkdir(exist_ok=True)
    (store.root / "blake3" / "ab" / "short").write_text("not a blob either")

    infos = list(store.list())

    assert [i.digest for i in infos] == sorted(digests)
    assert {i.size for i in infos} == {1, 2, 3, 4, 5}


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


@pytest.mark.parametrize("module", ["conveyor.store.artifacts", "conveyor.store.s3"])
def test_module_imports_only_stdlib_blake3_and_conveyor_basics(module: str) -> None:
    code = (
        f"import sys; before = set(sys.modules); import {module}; "
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
        "conveyor.store.blobs",
        "conveyor.store.cache",
        "conveyor.store.digests",
        "conveyor.store.files",
        "conveyor.store.reader",
        "conveyor.store.s3",
        "conveyor.store.s3_errors",
        "conveyor.store.s3_transfer",
        "conveyor.store.uploads",
    }
