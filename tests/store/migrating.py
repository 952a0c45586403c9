"""Moving a test's registry to a given schema revision, up or down, as Alembic does."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import conveyor.store.registry as registry_module
from conveyor.store.registry import Registry

__all__ = ["migrate_to"]


def migrate_to(reg: Registry, target: str, *, down: bool = False) -> None:
    """Upgrade (or with ``down``, downgrade) ``reg``'s schema to the revision ``target``."""
    cfg = Config()
    migrations = Path(registry_module.__file__).parent / "migrations"
    cfg.set_main_option("script_location", str(migrations))
    with reg.transaction() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)
