"""Fixtures of the store's tests: one registry per database, one artifact store per kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from tests.store.backends import make_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    with Registry(db_url) as reg:
        yield reg


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """An empty artifact store: a folder, or a fresh prefix of a SeaweedFS bucket."""
    return make_store(request.param, tmp_path, request)
