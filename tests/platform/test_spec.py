"""The one app spec: what a push sends, what the API refuses, what a revision keeps."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from pydantic import TypeAdapter, ValidationError

from conveyor.errors import UsageError
from conveyor.platform.kinds import kind_named
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec

SPEC = AppSpec(
    name="reports",
    command="python app.py",
    requirements=PurePosixPath("requirements.txt"),
    memory=512 * 1024 * 1024,
    env={"LEVEL": "info"},
    routes=(RouteSpec(path="/reports"), RouteSpec(host="reports.localhost", strip_prefix=True)),
    health_check=HealthCheckSpec(type="http", endpoint="/health", timeout=30),
    services=("warehouse-db",),
)


def test_a_spec_survives_the_push_body_and_the_registry() -> None:
    body = SPEC.to_json()
    assert AppSpec.from_json("reports", body) == SPEC
    assert TypeAdapter(AppSpec).validate_python(body) == SPEC
    assert "path" not in body  # the pushing machine's folder never leaves it


def test_a_revision_stored_by_the_previous_version_reads_back() -> None:
    stored = {
        "kind": "stream",
        "stream_app": {"app": "log", "input": "s.log"},
        "stream": "s",
        "position": 1,
        "env": {},
        "memory": None,
        "routes": [],
        "health_check": None,
        "services": [],
    }
    spec = AppSpec.from_json("s-log", stored)
    assert (spec.name, spec.kind, spec.routes, spec.default_health) == ("s-log", "stream", (), True)
    assert spec.options == {
        "stream_app": {"app": "log", "input": "s.log"},
        "stream": "s",
        "position": 1,
    }
    old_model = {"kind": "model", "model": "model.skops", "command": None, "env": {"A": "1"}}
    assert AppSpec.from_json("iris", old_model) == AppSpec(
        name="iris", model="model.skops", env={"A": "1"}
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"kind": "boat"}, "kind"),
        ({"shoe": 1}, "shoe"),
        ({"memory": 0}, "memory"),
        ({"routes": [{}]}, "routes"),
        ({"routes": [{"path": "no-slash"}]}, "routes"),
        ({"health_check": {"type": "tcp"}}, "health_check"),
        ({"health_check": {"timeout": 99999}}, "health_check"),
        ({"env": {"1BAD": "x"}}, "1BAD"),
        ({"requirements": "/etc/passwd"}, "inside the app's folder"),
        ({"requirements": "../../../etc/shadow"}, "inside the app's folder"),
    ],
)
def test_the_api_schema_refuses_unknown_fields_and_bad_values(
    change: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(AppSpec).validate_python({**SPEC.to_json(), **change})
    assert where in str(caught.value)


def test_each_kind_says_what_an_instance_runs_and_its_default_check(tmp_path: Path) -> None:
    model = AppSpec(name="iris", model="model.skops")
    launch = kind_named("model").launch(model, {"source": "/d/iris"}, tmp_path)
    assert launch.command[-1] == "/d/iris/model.skops"
    # What an isolated instance is given back of the platform's files: its droplet only.
    assert (launch.cwd, launch.read_only) == (Path("/d/iris"), (Path("/d/iris"),))
    assert kind_named("model").health_check(model).endpoint == "/v2/health/ready"
    command = kind_named("command")
    launch = command.launch(SPEC, {"venv": "/v", "source": "/s"}, tmp_path)
    assert (launch.cwd, launch.env["VIRTUAL_ENV"]) == (Path("/s"), "/v")
    assert launch.read_only == (Path("/v"), Path("/s"))
    assert launch.env["PATH"] == "/v/bin:/usr/local/bin:/usr/bin:/bin"  # not the platform's
    assert command.health_check(SPEC) == SPEC.health_check
    with pytest.raises(UsageError, match="was not uploaded"):
        kind_named("model").check(model, {})
    with pytest.raises(ValueError, match="unknown app kind 'boat'"):
        kind_named("boat")
