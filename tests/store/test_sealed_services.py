"""Service credentials are sealed at rest: the registry's files never hold them in clear."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.apps import AppRepository
from conveyor.store.registry import Registry
from conveyor.store.secrets import SecretBox

PASSWORD = "correct-horse-battery-staple-8841"


def _registry_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("registry.db"))


def test_a_service_password_never_appears_in_the_registry_files(tmp_path: Path) -> None:
    folder = tmp_path / "reg"
    box = SecretBox(tmp_path / "platform" / "secrets.key")
    with Registry(f"sqlite:///{folder / 'registry.db'}") as registry:
        apps = AppRepository(registry, box)
        apps.save_service("db", {"url": "postgresql://x", "password": PASSWORD})
        apps.save_service("db", {"url": "postgresql://y", "password": PASSWORD + "-2"})
        assert apps.services()["db"] == {"url": "postgresql://y", "password": PASSWORD + "-2"}
        assert PASSWORD.encode() not in _registry_bytes(folder)  # the WAL is still there
    assert PASSWORD.encode() not in _registry_bytes(folder)
    with Registry(f"sqlite:///{folder / 'registry.db'}") as registry:
        reopened = AppRepository(registry, SecretBox(tmp_path / "platform" / "secrets.key"))
        assert reopened.services()["db"]["password"] == PASSWORD + "-2"


def test_credentials_stored_in_plain_before_are_read_and_sealed_on_the_next_write(
    tmp_path: Path,
) -> None:
    box = SecretBox(tmp_path / "secrets.key")
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        AppRepository(registry).save_service("old", {"password": PASSWORD})  # an older version
        apps = AppRepository(registry, box)
        assert apps.services() == {"old": {"password": PASSWORD}}
        apps.save_service("new", {"password": "x"})
        with registry.transaction() as conn:
            stored = dict(
                conn.execute(
                    sa.select(
                        schema.platform_services.c.name, schema.platform_services.c.credentials
                    )
                ).all()
            )
        assert all(SecretBox.is_sealed(v) for v in stored.values())
        assert apps.services() == {"new": {"password": "x"}, "old": {"password": PASSWORD}}
