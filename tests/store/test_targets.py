"""The targets repository on every registry backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from conveyor.errors import NotFoundError, UsageError
from conveyor.store.registry import Registry
from conveyor.store.targets import TargetRepository

PROD = {"context": "c", "namespace": "ds", "registry": "r.example/ds"}


def test_a_target_is_kept_listed_replaced_and_removed(registry: Registry) -> None:
    targets = TargetRepository(registry)
    assert targets.add("prod", "kubernetes", PROD, replace=False) is True
    assert targets.add("dev", "kubernetes", {**PROD, "namespace": "dev"}, replace=False)
    assert [t["name"] for t in targets.all()] == ["dev", "prod"]
    assert targets.get("prod")["config"] == PROD
    with pytest.raises(UsageError, match="a target named 'prod' exists already"):
        targets.add("prod", "kubernetes", PROD, replace=False)
    assert targets.add("prod", "kubernetes", {**PROD, "namespace": "x"}, replace=True) is False
    assert targets.get("prod")["config"]["namespace"] == "x"
    targets.remove("prod")
    with pytest.raises(NotFoundError, match="there is no target named 'prod'"):
        targets.get("prod")
    with pytest.raises(NotFoundError):
        targets.remove("prod")


def test_the_built_in_local_target_cannot_be_added_or_removed(registry: Registry) -> None:
    targets = TargetRepository(registry)
    with pytest.raises(UsageError, match="'local' is the built-in target"):
        targets.add("local", "kubernetes", PROD, replace=True)
    with pytest.raises(UsageError, match="'local' is the built-in target"):
        targets.remove("local")
