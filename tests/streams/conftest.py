"""Fixtures for the stream tests: one binder suite, run on every binder."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder, open_binder
from tests.conftest import kafka_url, require_service

REDIS_URL = "redis://127.0.0.1:6379/0"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
NATS_URL = "nats://127.0.0.1:4222"
BINDERS = ["embedded", "redis", "rabbitmq", "kafka", "nats"]


def binder_url(kind: str, tmp_path: Path, lease: float = 1.0) -> str:
    """The URL of a binder of ``kind``; the service is required (or the test skipped)."""
    if kind == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        return f"{REDIS_URL}?lease={lease}"
    if kind == "rabbitmq":
        require_service("RabbitMQ", "127.0.0.1", 5672)
        return RABBIT_URL
    if kind == "kafka":
        return f"{kafka_url()}?partitions=2"
    if kind == "nats":
        require_service("NATS", "127.0.0.1", 4222)
        return f"{NATS_URL}?lease={lease}"
    return f"embedded://{tmp_path / 'streams.db'}?lease={lease}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings in a fresh home; stream apps may use files anywhere in the test's folder."""
    return Settings.from_env(
        {
            "CONVEYOR_HOME": str(tmp_path / "home"),
            "CONVEYOR_STREAM_DATA": str(tmp_path / "data"),
            "CONVEYOR_STREAM_ROOTS": str(tmp_path),
        }
    )


class Binders:
    """Opens binders of one kind on one URL, remembers destinations, cleans up after."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.opened: list[Binder] = []
        self.created: list[tuple[str, list[str]]] = []

    def open(self) -> Binder:
        binder = open_binder(self.url, self.settings)
        self.opened.append(binder)
        return binder

    def destination(self, *groups: str) -> str:
        name = f"t{uuid.uuid4().hex[:10]}"
        self.created.append((name, list(groups)))
        return name

    def cleanup(self) -> None:
        if self.opened:
            binder = self.opened[0]
            for name, groups in self.created:
                for suffix in ("", ".dlq", "-0", "-1", "-2"):
                    binder.delete(name + suffix, groups)
        for binder in self.opened:
            binder.close()


@pytest.fixture(params=BINDERS)
def binders(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings
) -> Iterator[Binders]:
    made = Binders(binder_url(request.param, tmp_path), settings)
    try:
        yield made
    finally:
        made.cleanup()


Opener = Callable[[], Binder]


@pytest.fixture
def kafka(settings: Settings) -> Iterator[Any]:
    """A Kafka binder on the session's broker (Tansu)."""
    binder = open_binder(kafka_url(), settings)
    yield binder
    binder.close()


@pytest.fixture
def binder(tmp_path: Path, settings: Settings) -> Iterator[Binder]:
    """An embedded binder in the test's folder."""
    opened = open_binder(f"embedded://{tmp_path / 'streams.db'}", settings)
    yield opened
    opened.close()
