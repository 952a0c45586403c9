"""Shared fixtures: isolated Conveyor homes and the real backing services.

A test that needs a service (PostgreSQL, Redis, RabbitMQ, S3) asks for its
fixture; when the service does not answer the test is skipped with the reason,
except under ``CONVEYOR_REQUIRE_SERVICES=1`` (set by .ci/run), where it fails.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conveyor.config import Settings

if TYPE_CHECKING:
    from tests.s3_server import SeaweedFS

POSTGRES_ADMIN_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def kafka_url() -> str:
    """The session's Kafka-protocol broker (Tansu, started on first use) as a binder URL."""
    from tests import tansu

    try:
        return tansu.kafka_url()
    except (ImportError, OSError, RuntimeError) as exc:
        reason = f"cannot start Tansu (the Kafka-protocol broker of the tests): {exc}"
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _stop_tansu() -> Iterator[None]:
    """Stop the session's Tansu broker (by its pid) when the tests are done."""
    yield
    from tests import tansu

    tansu.stop()


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, when services are required, fail) unless host:port answers."""
    if _port_open(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and CONVEYOR_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home, registry and artifact store live in a fresh temporary folder."""
    return Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})


@pytest.fixture
def conveyor_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Point CONVEYOR_HOME of this process (and the children it starts) at the test home."""
    monkeypatch.setenv("CONVEYOR_HOME", str(settings.home))
    monkeypatch.delenv("CONVEYOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_ARTIFACT_ROOT", raising=False)
    from conveyor.config import get_settings

    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 gateway on free ports for the whole session, stopped by its pid at the end."""
    from tests import s3_server

    try:
        server = s3_server.start(tmp_path_factory.mktemp("seaweedfs"))
    except (RuntimeError, ImportError) as exc:
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"SeaweedFS did not start ({exc}); CONVEYOR_REQUIRE_SERVICES=1 needs it")
        pytest.skip(f"SeaweedFS did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(seaweedfs: SeaweedFS) -> str:
    """A fresh, empty prefix in the test bucket: ``s3://conveyor-test/<random>``."""
    from tests.s3_server import BUCKET

    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_env(
    conveyor_env: Settings, s3_url: str, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """conveyor_env with the artifact store in the test bucket (for this process and children)."""
    from conveyor.config import get_settings

    for name, value in {
        "CONVEYOR_ARTIFACT_ROOT": s3_url,
        "CONVEYOR_S3_ENDPOINT_URL": seaweedfs.endpoint,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
