"""What Conveyor keeps is private to its user whatever the umask; credentials are sealed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.errors import StoreError, UsageError
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import MetricRecord
from conveyor.store.registry import Registry
from conveyor.store.secrets import SecretBox
from tests.store.test_registry import make_run


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The umask most systems ship: without care, files would be world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_artifact_store_and_a_new_home_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = ArtifactStore(home / "artifacts")
    digest = store.put_bytes(b"personal data")
    hexd = digest.removeprefix("blake3:")

    shard = store.root / "blake3" / hexd[:2]
    for folder in (home, store.root, store.root / "tmp", store.root / "blake3", shard):
        assert mode(folder) == 0o700, folder
    assert mode(shard / hexd[2:]) == 0o400


def test_a_file_stored_by_path_becomes_an_owner_only_blob(tmp_path: Path) -> None:
    source = tmp_path / "patients.csv"
    source.write_bytes(b"name,diagnosis\n" * 100_000)  # the large, copied-in path
    source.chmod(0o600)
    store = ArtifactStore(tmp_path / "artifacts")

    digest = store.put_file(source)

    hexd = digest.removeprefix("blake3:")
    assert mode(store.root / "blake3" / hexd[:2] / hexd[2:]) == 0o400


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)

    ArtifactStore(shared).put_bytes(b"x")

    assert mode(shared) == 0o755
    assert mode(shared / "blake3") == 0o700


def test_the_registry_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Registry(f"sqlite:///{home / 'registry.db'}") as registry:
        run = make_run()
        registry.create_run(run)
        registry.add_metrics(run.id, [MetricRecord("auc", 0.9, None, 1.0)])
        files = [home / "registry.db", home / "registry.db-wal", home / "registry.db-shm"]
        assert all(f.exists() for f in files)
        for f in files:
            assert mode(f) == 0o600, f
    assert mode(home) == 0o700


def test_a_registry_made_world_readable_before_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    Registry(f"sqlite:///{db}").close()
    db.chmod(0o644)

    with Registry(f"sqlite:///{db}") as registry:
        registry.create_run(make_run())
        assert mode(db) == 0o600
        assert mode(tmp_path / "registry.db-wal") == 0o600


# -- sealed credentials --------------------------------------------------------------


def test_sealed_credentials_round_trip_and_hide_the_values(settings: Settings) -> None:
    box = SecretBox.from_settings(settings)

    token = box.seal({"password": "s3cret-pa55", "port": 5432})

    assert "s3cret" not in token
    assert "password" not in token
    assert SecretBox.is_sealed(token)
    assert not SecretBox.is_sealed("s3cret-pa55")
    assert SecretBox.from_settings(settings).unseal(token) == {
        "password": "s3cret-pa55",
        "port": 5432,
    }
    assert settings.secrets_key_file.parent == settings.platform_dir
    assert mode(settings.secrets_key_file) == 0o600
    assert mode(settings.platform_dir) == 0o700
    assert mode(settings.home) == 0o700


def test_without_the_key_sealed_credentials_stay_closed(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "a" / "secrets.key").seal({"password": "x"})

    other = SecretBox(tmp_path / "b" / "secrets.key")
    other.seal({})  # makes its own key

    with pytest.raises(StoreError, match="cannot be opened with the key"):
        other.unseal(token)
    with pytest.raises(StoreError, match=r"secrets\.key, is missing"):
        SecretBox(tmp_path / "c" / "secrets.key").unseal(token)
    with pytest.raises(StoreError, match="not sealed"):
        SecretBox(tmp_path / "a" / "secrets.key").unseal("password")


def test_a_key_file_other_users_can_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "secrets.key"
    token = SecretBox(key).seal({"password": "x"})
    key.chmod(0o644)

    with pytest.raises(StoreError, match="can be read by other users") as caught:
        SecretBox(key).unseal(token)
    assert f"chmod 600 {key}" in str(caught.value)


def test_values_json_cannot_hold_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot seal"):
        SecretBox(tmp_path / "secrets.key").seal({"when": object()})
