"""``conveyor catalog`` owns the stream app catalogue, so ``conveyor app NAME`` can show any app."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result

from conveyor.cli.main import cli


class FakeClient:
    """Answers the two reads these commands make, and remembers what was asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.paths.append(path)
        if path == "/v1/stream-apps":
            return [{"role": "processor", "name": "filter", "description": "keeps some"}]
        name = path.rsplit("/", 1)[-1]
        return {
            "name": name, "state": "RUNNING", "running": 1, "instances": 1, "revision": 1,
            "latest_revision": 1, "routes": [], "instances_detail": [], "events": [],
        }  # fmt: skip


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    for module in ("conveyor.cli.catalog", "conveyor.cli.apps"):
        monkeypatch.setattr(f"{module}.connect", lambda: fake)
    return fake


def conveyor(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_catalog_lists_the_stream_apps(client: FakeClient) -> None:
    result = conveyor("catalog", "list")
    assert result.exit_code == 0, result.output
    assert "filter" in result.stdout
    assert result.stderr == ""
    assert client.paths == ["/v1/stream-apps"]


def test_catalog_help_names_its_commands() -> None:
    result = conveyor("catalog", "--help")
    assert result.exit_code == 0
    for verb in ("list", "info", "register", "unregister"):
        assert f"  {verb} " in result.stdout


def test_the_old_spelling_still_lists_the_catalogue_with_a_note(client: FakeClient) -> None:
    result = conveyor("app", "list")
    assert result.exit_code == 0, result.output
    assert "filter" in result.stdout
    assert "`conveyor app list` is deprecated" in result.stderr
    assert "`conveyor app show list`" in result.stderr
    assert client.paths == ["/v1/stream-apps"]


@pytest.mark.parametrize("name", ["list", "info", "show"])
def test_an_app_named_like_a_subcommand_is_shown_with_app_show(
    client: FakeClient, name: str
) -> None:
    result = conveyor("app", "show", name)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{name}: RUNNING, 1/1 running")
    assert client.paths == [f"/v1/apps/{name}"]


def test_app_name_shows_the_app(client: FakeClient) -> None:
    result = conveyor("app", "iris")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("iris: RUNNING")
