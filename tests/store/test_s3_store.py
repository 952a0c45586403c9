"""What only the bucket store does: HEAD before upload, multipart, its read cache, its faults.

The behaviour both stores share is tested on both in test_artifacts.py.
"""

from __future__ import annotations

import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.errors import ConfigError, StoreError
from conveyor.store.artifacts import ArtifactStore, digest_bytes
from conveyor.store.cache import ReadCache
from conveyor.store.s3 import S3ArtifactStore
from tests.s3_server import BUCKET, SeaweedFS
from tests.store.backends import S3_PART, leftovers, make_store
from tests.store.test_artifacts import SMALL

pytestmark = pytest.mark.s3


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> S3ArtifactStore:
    made = make_store("s3", tmp_path, request)
    assert isinstance(made, S3ArtifactStore)
    return made


def calls(store: S3ArtifactStore) -> list[str]:
    """The names of the S3 operations the store sends from now on."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    store._client.meta.events.register("before-call.s3", record)
    return seen


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_from_settings_selects_the_bucket_named_in_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "CONVEYOR_HOME": str(tmp_path / "home"),
            "CONVEYOR_ARTIFACT_ROOT": "s3://conveyor-artifacts/team-a/",
            "CONVEYOR_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        }
    )
    store = ArtifactStore.from_settings(settings)

    assert isinstance(store, S3ArtifactStore)
    assert store.location == settings.artifact_location == "s3://conveyor-artifacts/team-a"
    assert not (tmp_path / "home").exists()  # nothing local until something is read


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("gs://bucket/x", "neither a folder nor an s3:// URL"),
        ("s3://", "is not a bucket URL"),
        ("s3://Upper/x", "is not a bucket URL"),
        ("s3://bucket/../x", "is not a bucket URL"),
    ],
)
def test_a_malformed_artifact_root_is_a_config_error(root: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"CONVEYOR_ARTIFACT_ROOT": root})


def test_storing_content_the_bucket_holds_sends_only_a_head(store: S3ArtifactStore) -> None:
    data = b"model weights " * (S3_PART // 10)  # more than one part: worth a HEAD
    digest = store.put_bytes(data)
    sent = calls(store)

    assert store.put_bytes(data) == digest

    assert sent == ["HeadObject"]


def test_a_small_blob_is_sent_in_one_request(store: S3ArtifactStore) -> None:
    sent = calls(store)  # below one part, a HEAD would cost a round trip of its own

    digest = store.put_bytes(SMALL)
    store.put_bytes(SMALL)

    assert sent == ["PutObject", "PutObject"]
    assert store.read_bytes(digest) == SMALL


def test_a_large_blob_goes_up_in_parts_and_comes_back_whole(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (S3_PART * 2 // 256) + b"odd tail"
    sent = calls(store)

    digest = store.put_bytes(data)

    assert sent.count("UploadPart") == 3
    assert "CompleteMultipartUpload" in sent
    assert store.read_bytes(digest) == data
    assert store.info(digest).size == len(data)
    assert leftovers(store) == []


def test_a_file_that_changes_while_it_is_sent_is_refused_and_nothing_is_left(
    store: S3ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "growing.bin"
    source.write_bytes(b"a" * (3 * S3_PART))
    holds = store._holds

    def holds_then_edit(digest: str, size: int) -> bool:
        answer = holds(digest, size)
        with source.open("r+b") as fh:  # another process writes to it after it was hashed
            fh.seek(S3_PART + 10)
            fh.write(b"b")
        return answer

    monkeypatch.setattr(store, "_holds", holds_then_edit)

    with pytest.raises(StoreError, match=f"{source} changed while it was being stored"):
        store.put_file(source)

    assert list(store.list()) == []
    assert leftovers(store) == []


def test_reads_keep_verified_private_copies_in_a_bounded_cache(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    blobs = [bytes([i]) * 40_000 for i in range(5)]
    digests = [store.put_bytes(b) for b in blobs]
    small = S3ArtifactStore(
        store.location,
        cache=ReadCache(tmp_path / "small-cache", 100_000),
        endpoint_url=store._endpoint,
        access_key=store._credentials[0],
        secret_key=store._credentials[1],
    )

    for digest, data in zip(digests, blobs, strict=True):
        assert small.read_bytes(digest) == data

    cached = sorted(p for p in (tmp_path / "small-cache").iterdir() if p.is_file())
    assert sum(p.stat().st_size for p in cached) <= 100_000
    assert [p.name for p in cached] == sorted(d.removeprefix("blake3:") for d in digests[-2:])
    assert {mode(p) for p in cached} == {0o400}
    assert mode(tmp_path / "small-cache") == 0o700


def test_a_tampered_cache_copy_is_fetched_again_not_returned(store: S3ArtifactStore) -> None:
    digest = store.put_bytes(SMALL)
    with store.open(digest) as reader:
        assert reader.read() == SMALL
    copy = store._cache.path(digest)
    copy.chmod(0o600)
    copy.write_bytes(b"tampered with on this machine")

    assert store.read_bytes(digest) == SMALL
    with store.open(digest) as reader:
        assert reader.read() == SMALL
    assert copy.read_bytes() == SMALL


def test_list_skips_objects_that_are_not_blobs(store: S3ArtifactStore) -> None:
    digest = store.put_bytes(SMALL)
    for key in ("README", "blake3/README", "blake3/ab"):
        store._client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=b"x")

    assert [i.digest for i in store.list()] == [digest]
    assert store.gc([digest]).removed == 0


# -- faults -------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(tmp_path: Path, endpoint: str, **options: Any) -> S3ArtifactStore:
    return S3ArtifactStore(
        "s3://conveyor-artifacts/team-a",
        cache=ReadCache(tmp_path / "cache", 1 << 20),
        endpoint_url=endpoint,
        access_key="key",
        secret_key="secret",
        **options,
    )


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_a_server_that_does_not_answer_is_a_clear_error(
    tmp_path: Path, silent_port: int, how: str
) -> None:
    port = _closed_port() if how == "refused" else silent_port
    endpoint = f"http://127.0.0.1:{port}"
    store = _store(tmp_path, endpoint, connect_timeout=1, read_timeout=1)

    for operation in (lambda: store.put_bytes(SMALL), lambda: list(store.list())):
        with pytest.raises(StoreError) as caught:
            operation()
        assert "s3://conveyor-artifacts/team-a" in str(caught.value)
        assert f"(endpoint {endpoint}) does not answer" in str(caught.value)
        assert "CONVEYOR_S3_ENDPOINT_URL" in str(caught.value)


def test_wrong_credentials_are_a_clear_error(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    store = S3ArtifactStore(
        f"s3://{BUCKET}/x",
        cache=ReadCache(tmp_path / "cache", 1 << 20),
        endpoint_url=seaweedfs.endpoint,
        access_key="not-a-key",
        secret_key="wrong",
    )
    for operation in (
        lambda: store.put_bytes(SMALL),
        lambda: store.exists(digest_bytes(SMALL)),
        lambda: list(store.list()),
    ):
        with pytest.raises(StoreError, match="refused the request") as caught:
            operation()
        assert "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_a_missing_bucket_is_a_clear_error(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    store = S3ArtifactStore(
        "s3://no-such-bucket-here/x",
        cache=ReadCache(tmp_path / "cache", 1 << 20),
        endpoint_url=seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    )
    # (SeaweedFS makes a bucket on the first upload to it; AWS refuses the upload the same way.)
    for operation in (lambda: list(store.list()), lambda: store.read_bytes(digest_bytes(SMALL))):
        with pytest.raises(StoreError, match="no-such-bucket-here/x does not exist") as caught:
            operation()
        assert "Create the bucket" in str(caught.value)


def test_without_boto3_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigError, match=r"needs boto3") as caught:
        _store(tmp_path, "http://127.0.0.1:9")
    assert "pip install 'conveyor[s3]'" in str(caught.value)
