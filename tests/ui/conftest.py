"""Dashboard test fixtures: a platform per test module, and a logged-in client per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.platform.control import Platform, running_platform
from tests.ui.dashboard import logged_in


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with running_platform(tmp_path_factory.mktemp(name)) as running:
        yield running


@pytest.fixture
def client(platform: Platform) -> Iterator[httpx.Client]:
    opened = logged_in(platform)
    yield opened
    opened.close()
