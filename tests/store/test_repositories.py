"""The platform's repositories on every registry backend: apps with their bindings, streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import NotFoundError, UsageError
from conveyor.store.apps import AppRepository
from conveyor.store.registry import Registry
from conveyor.store.streams import StreamRepository


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with Registry(url) as reg:
        yield reg


def test_bindings_follow_each_apps_newest_revision(registry: Registry) -> None:
    apps = AppRepository(registry)
    apps.save_service("db", {"url": "postgresql://x"})
    for name in ("b", "a"):
        apps.save_app(name, state="started", instances=1, revision=1)
        apps.add_revision(
            name, description="push", spec={"services": ["db"]}, files=None, droplet=None
        )
    apps.add_revision("b", description="unbind", spec={"services": []}, files=None, droplet=None)
    assert apps.bindings() == {"db": ["a"]}
    apps.delete_app("a")
    assert apps.bindings() == {}


def test_a_stream_its_versions_and_user_apps(registry: Registry) -> None:
    streams = StreamRepository(registry)
    streams.create("s", "http | log")
    with pytest.raises(UsageError, match="already exists"):
        streams.create("s", "http | log")
    for binder in ("embedded", "redis"):
        version = streams.add_version(
            "s", definition="http | log", properties={}, binder=binder, description="deploy"
        )
        streams.set_status("s", "deployed", version=version)
    record = streams.stream("s")
    assert (record.status, record.version) == ("deployed", 2)
    assert [v.binder for v in streams.versions("s")] == ["embedded", "redis"]
    streams.save_user_app("enrich", "python:m:f", {"m.py": {"digest": "d"}}, None)
    assert [(a.name, a.uri) for a in streams.user_apps()] == [("enrich", "python:m:f")]
    streams.delete("s")
    with pytest.raises(NotFoundError, match="no stream named 's'"):
        streams.stream("s")
    streams.delete_user_app("enrich")
    with pytest.raises(NotFoundError):
        streams.delete_user_app("enrich")
