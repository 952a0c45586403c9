"""App kinds: one strategy per kind of app (see :mod:`.base`); model and command are built in."""

from __future__ import annotations

from conveyor.platform.kinds.base import (
    AppKind,
    Files,
    Launch,
    Staging,
    kind_named,
    kind_names,
    register_kind,
)
from conveyor.platform.kinds.command import CommandKind
from conveyor.platform.kinds.model import ModelKind

__all__ = ["AppKind", "Files", "Launch", "Staging", "kind_named", "kind_names", "register_kind"]

register_kind(ModelKind())
register_kind(CommandKind())
