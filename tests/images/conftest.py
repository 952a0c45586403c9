"""The registry fixture: one real docker-registry per test module, on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.oci_registry import OciRegistry, start


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A no-auth registry started for the module, stopped by its pid afterwards."""
    try:
        server = start(tmp_path_factory.mktemp("registry"))
    except RuntimeError as exc:
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc}; CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
