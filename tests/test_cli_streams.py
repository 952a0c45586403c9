"""`conveyor stream ...` takes the stream as SCDF's shell does (`--name x`) or as STREAM."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result

from conveyor.cli.main import cli

APPS: list[dict[str, Any]] = [
    {"name": "x-time", "app": "time", "input": None, "output": "x.time", "options": {}}
]


class FakeClient:
    """Answers what the stream commands ask, and remembers the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.requests.append((method, path))
        if method == "POST" and path == "/v1/streams":
            return {"apps": APPS}
        if path.endswith("/history"):
            return []
        if path.endswith("/undeploy"):
            return {"removed": ["x-time", "x-log"]}
        return {
            "name": "x", "status": "deployed", "version": 1, "definition": "time | log",
            "apps": [],
        }  # fmt: skip

    def operation(self, path: str, body: Any, echo: Any = None) -> Any:
        self.requests.append(("POST", path))
        return {"version": 1, "apps": ["x-time", "x-log"]}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr("conveyor.cli.streams.connect", lambda: fake)
    return fake


def conveyor(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_the_scdf_shell_spelling_creates_deploys_shows_and_undeploys(client: FakeClient) -> None:
    created = conveyor("stream", "create", "--name", "x", "--definition", "time | log", "--deploy")
    assert created.exit_code == 0, created.output
    assert "stream x deployed (version 1)" in created.stdout
    for verb in ("deploy", "info", "undeploy", "history", "destroy"):
        result = conveyor("stream", verb, "--name", "x")
        assert result.exit_code == 0, result.output
    assert client.requests == [
        ("POST", "/v1/streams"),
        ("POST", "/v1/streams/x/deploy"),
        ("POST", "/v1/streams/x/deploy"),
        ("GET", "/v1/streams/x"),
        ("POST", "/v1/streams/x/undeploy"),
        ("GET", "/v1/streams/x/history"),
        ("DELETE", "/v1/streams/x"),
    ]


def test_the_positional_name_still_works_and_may_repeat_the_option(client: FakeClient) -> None:
    assert conveyor("stream", "info", "x").exit_code == 0
    assert conveyor("stream", "info", "x", "--name", "x").exit_code == 0
    assert client.requests == [("GET", "/v1/streams/x")] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error: name the stream: STREAM or --name STREAM"),
        (("x", "--name", "y"), "Error: the stream is named twice, 'x' and --name 'y'; give one"),
    ],
)
def test_a_missing_or_doubled_name_is_a_usage_error(
    client: FakeClient, args: tuple[str, ...], message: str
) -> None:
    result = conveyor("stream", "deploy", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "stream deploy --help" in result.stderr
    assert client.requests == []
