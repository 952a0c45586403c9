"""The manifest a user writes: what a valid conveyor.yml becomes, and what each mistake says."""

from __future__ import annotations

import textwrap
from pathlib import Path, PurePosixPath

import pytest

from conveyor.errors import ConveyorError
from conveyor.platform.errors import ManifestError, PlatformError
from conveyor.platform.health import HealthCheck
from conveyor.platform.manifest import load_manifest, parse_manifest
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec

EXAMPLE = """\
applications:
  - name: iris
    model: run:3f2a9c/model          # a model app, served by the serving runtime
    instances: 2
  - name: reports
    path: ./reports-app
    command: uvicorn app:app --port $PORT
    requirements: requirements.txt     # or pyproject.toml / uv.lock
    instances: 2
    memory: 512M
    env: {LOG_LEVEL: info, DEBUG: yes, RATIO: 1.10, WORKERS: 4}
    routes: [{path: /reports}, {host: Reports.localhost, path: /v2, strip-prefix: true}]
    health-check: {type: http, endpoint: /health, timeout: 60}
    services: [warehouse-db]
"""
APP = "applications:\n  - name: reports\n    command: serve\n"


def write_project(tmp_path: Path, text: str = EXAMPLE) -> Path:
    (tmp_path / "reports-app").mkdir()
    (tmp_path / "reports-app" / "requirements.txt").write_text("fastapi\n")
    manifest = tmp_path / "conveyor.yml"
    manifest.write_text(text)
    return manifest


def error_of(text: str) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(textwrap.dedent(text), "conveyor.yml")
    return str(caught.value)


def test_the_issue_example_becomes_typed_apps(tmp_path: Path) -> None:
    manifest = load_manifest(write_project(tmp_path))
    iris, reports = manifest.applications
    assert iris == AppSpec(name="iris", model="run:3f2a9c/model", instances=2)
    assert (iris.kind, iris.line, iris.routes, iris.health_check.type) == ("model", 2, None, "port")
    assert reports.kind == "command"
    assert reports.command == "uvicorn app:app --port $PORT"
    assert reports.path == (tmp_path / "reports-app").resolve()
    assert reports.requirements == PurePosixPath("requirements.txt")
    assert (reports.instances, reports.memory) == (2, 512 * 1024 * 1024)
    # Values are kept as written, so `yes` does not turn into "True" nor 1.10 into "1.1".
    assert dict(reports.env) == {
        "LOG_LEVEL": "info",
        "DEBUG": "yes",
        "RATIO": "1.10",
        "WORKERS": "4",
    }
    assert reports.routes == (
        RouteSpec(path="/reports"),
        RouteSpec(host="reports.localhost", path="/v2", strip_prefix=True),
    )
    assert reports.health_check == HealthCheckSpec(type="http", endpoint="/health", timeout=60)
    assert reports.services == ("warehouse-db",)
    assert manifest.app("reports") is reports
    assert manifest.source == str(tmp_path / "conveyor.yml")


def test_defaults_and_an_explicitly_empty_route_list(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(
        "applications:\n  - name: worker\n    command: python work.py\n    routes: []\n"
    )
    (app,) = load_manifest(tmp_path / "conveyor.yml").applications
    assert app.path == tmp_path.resolve()
    assert (app.instances, app.memory, app.routes, app.services) == (1, None, (), ())
    assert app.health_check.to_check() == HealthCheck()


def test_http_check_becomes_the_supervisors_definition() -> None:
    spec = HealthCheckSpec(type="http", endpoint="/health", timeout=5, interval=2)
    assert spec.to_check() == HealthCheck("http", "/health", timeout=5, interval=2)


def test_readiness_check_is_its_own_block_and_optional() -> None:
    (plain,) = parse_manifest(APP, "conveyor.yml").applications
    assert plain.readiness_check is None
    text = APP + "    readiness-check: {type: http, endpoint: /ready, interval: 0.5}\n"
    (app,) = parse_manifest(text, "conveyor.yml").applications
    assert app.readiness_check == HealthCheckSpec(type="http", endpoint="/ready", interval=0.5)
    assert app.health_check == HealthCheckSpec()


def test_merge_keys_share_settings_and_own_keys_win() -> None:
    manifest = parse_manifest(
        textwrap.dedent("""\
        applications:
          - &base
            name: a
            command: serve
            instances: 3
            memory: 1G
          - <<: *base
            name: b
            instances: 1
        """),
        "conveyor.yml",
    )
    a, b = manifest.applications
    assert (a.instances, b.instances, b.memory, b.command) == (3, 1, 1024**3, "serve")


@pytest.mark.parametrize(
    ("written", "size"),
    [("512M", 512 * 1024**2), ("512MB", 512 * 1024**2), ("512Mi", 512 * 1024**2),
     ("1.5g", 3 * 1024**3 // 2), ("64K", 64 * 1024)],
)  # fmt: skip
def test_memory_sizes(written: str, size: int) -> None:
    (app,) = parse_manifest(APP + f"    memory: {written}\n", "conveyor.yml").applications
    assert app.memory == size


def test_manifest_error_is_a_platform_error_with_a_usage_exit_code() -> None:
    assert issubclass(ManifestError, PlatformError)
    assert issubclass(ManifestError, ConveyorError)
    assert ManifestError.exit_code == 2


BAD = [
    # (manifest text, the whole message)
    (
        APP + "    instances: two\n",
        "conveyor.yml:4:16: applications[0].instances: expected a whole number ≥ 0, got 'two'",
    ),
    (
        APP + "    instances: -1\n",
        "conveyor.yml:4:16: applications[0].instances: expected a whole number ≥ 0, got '-1'",
    ),
    (
        APP + "    instances: 100000\n",
        "conveyor.yml:4:16: applications[0].instances: expected 0 to 64 instances, got 100000",
    ),
    (
        APP + "    instances: 1.5\n",
        "conveyor.yml:4:16: applications[0].instances: expected a whole number ≥ 0, got '1.5'",
    ),
    (
        APP + "    instances: true\n",
        "conveyor.yml:4:16: applications[0].instances: expected a whole number ≥ 0, got 'true'",
    ),
    (
        "applications:\n  - name: Reports_1\n    command: serve\n",
        "conveyor.yml:2:11: applications[0].name: 'Reports_1' is not a valid app name; use 1-63 "
        "lower-case letters, digits and '-', starting and ending with a letter or digit "
        "(it becomes a host name)",
    ),
    (
        "applications:\n  - command: serve\n",
        "conveyor.yml:2:5: applications[0]: missing 'name'",
    ),
    (
        "applications:\n  - name: 42\n    command: serve\n",
        "conveyor.yml:2:11: applications[0].name: expected an app name, got '42'; quote it",
    ),
    (
        APP + "  - name: reports\n    model: run:abc/model\n",
        "conveyor.yml:4:11: applications[1].name: 'reports' is already the name of the app "
        "on line 2",
    ),
    (
        APP + "    model: run:abc/model\n",
        "conveyor.yml:2:5: applications[0]: give exactly one of 'model' (a model app) or 'command'",
    ),
    (
        "applications:\n  - name: reports\n    instances: 2\n",
        "conveyor.yml:2:5: applications[0]: give exactly one of 'model' (a model app) or 'command' "
        "(or a Procfile with a 'web:' line in the app's folder)",
    ),
    (
        "applications:\n  - name: iris\n    model: run:abc/model\n    path: ./app\n",
        "conveyor.yml:4:11: applications[0].path: only for command apps; "
        "a model app runs its model",
    ),
    (
        "applications:\n  - name: iris\n    model: run:abc\n",
        "conveyor.yml:3:12: applications[0].model: 'run:abc' is not a run model; "
        "the form is run:<run-id>/<model>",
    ),
    (
        APP + "    path: ../elsewhere\n",
        "conveyor.yml:4:11: applications[0].path: '../elsewhere' must stay inside the manifest's "
        "folder",
    ),
    (
        APP + "    requirements: setup.py\n",
        "conveyor.yml:4:19: applications[0].requirements: 'setup.py' is not a requirements "
        "*.txt, pyproject.toml or uv.lock",
    ),
    (
        APP + "    requirements: ../requirements.txt\n",
        "conveyor.yml:4:19: applications[0].requirements: '../requirements.txt' must be a file "
        "inside the app's folder",
    ),
    (
        APP + "    memory: lots\n",
        "conveyor.yml:4:13: applications[0].memory: expected a size like 512M or 1G, got 'lots'",
    ),
    (
        APP + "    memory: 512\n",
        "conveyor.yml:4:13: applications[0].memory: expected a size like 512M or 1G, got '512'; "
        "add a unit (K, M or G)",
    ),
    (
        APP + "    memory: 0M\n",
        "conveyor.yml:4:13: applications[0].memory: expected a size like 512M or 1G, got '0M'",
    ),
    (
        APP + "    env: {LOG: {level: info}}\n",
        "conveyor.yml:4:16: applications[0].env.LOG: expected text, a number or true/false, "
        "got a mapping; write '' for an empty value",
    ),
    (
        APP + "    env:\n      EMPTY:\n",
        "conveyor.yml:5:13: applications[0].env.EMPTY: expected text, a number or true/false, "
        "got nothing; write '' for an empty value",
    ),
    (
        APP + "    env: {LOG-LEVEL: info}\n",
        "conveyor.yml:4:11: applications[0].env.LOG-LEVEL: not a variable name; "
        "use A-Z, 0-9 and '_'",
    ),
    (
        APP + "    env: [LOG_LEVEL=info]\n",
        "conveyor.yml:4:10: applications[0].env: expected a mapping, got a list",
    ),
    (
        APP + "    routes: {path: /reports}\n",
        "conveyor.yml:4:13: applications[0].routes: expected a list of routes, got a mapping",
    ),
    (
        APP + "    routes: [{path: reports}]\n",
        "conveyor.yml:4:21: applications[0].routes[0].path: 'reports' must start with '/' and "
        "not end with one, without spaces, '?' or '#' (for example /iris)",
    ),
    (
        APP + "    routes: [{path: /reports/}]\n",
        "conveyor.yml:4:21: applications[0].routes[0].path: '/reports/' must start with '/' and "
        "not end with one, without spaces, '?' or '#' (for example /iris)",
    ),
    (
        APP + "    routes: [{path: /a}, {host: 'reports..localhost'}]\n",
        "conveyor.yml:4:33: applications[0].routes[1].host: 'reports..localhost' is not a "
        "valid host name",
    ),
    (
        APP + "    routes: [{strip-prefix: true}]\n",
        "conveyor.yml:4:14: applications[0].routes[0]: a route needs a host, a path or both",
    ),
    (
        APP + "    routes: [{path: /a, strip-prefix: yes please}]\n",
        "conveyor.yml:4:39: applications[0].routes[0].strip-prefix: expected true or false, "
        "got 'yes please'",
    ),
    (
        APP + "    health-check: {type: tcp}\n",
        "conveyor.yml:4:26: applications[0].health-check.type: expected port, process or http, "
        "got 'tcp'",
    ),
    (
        APP + "    health-check: {endpoint: /health}\n",
        "conveyor.yml:4:30: applications[0].health-check.endpoint: only used by 'type: http'",
    ),
    (
        APP + "    health-check: {type: http, endpoint: health}\n",
        "conveyor.yml:4:42: applications[0].health-check.endpoint: 'health' must start with '/'",
    ),
    (
        APP + "    health-check: {interval: .nan}\n",
        "conveyor.yml:4:30: applications[0].health-check.interval: expected a number of "
        "seconds > 0, got '.nan'",
    ),
    (
        APP + "    health-check: {timeout: 0}\n",
        "conveyor.yml:4:29: applications[0].health-check.timeout: expected a number of "
        "seconds > 0, got '0'",
    ),
    (
        APP + "    health-check: {type: http, path: /health}\n",
        "conveyor.yml:4:32: applications[0].health-check.path: unknown key; valid keys: type, "
        "endpoint, timeout, interval, invocation-timeout",
    ),
    (
        APP + "    services: warehouse-db\n",
        "conveyor.yml:4:15: applications[0].services: expected a list of service names, "
        "got 'warehouse-db'",
    ),
    (
        APP + "    services: [db, db]\n",
        "conveyor.yml:4:20: applications[0].services[1]: 'db' is listed twice",
    ),
    (
        APP + "    services: ['my db']\n",
        "conveyor.yml:4:16: applications[0].services[0]: 'my db' is not a valid service name",
    ),
    (
        APP + "    comand: serve\n",
        "conveyor.yml:4:5: applications[0].comand: unknown key; valid keys: name, model, path, "
        "command, requirements, instances, memory, env, routes, health-check, readiness-check, "
        "services, autoscaling, canary, follow-alias, or a Cloud Foundry attribute",
    ),
    (
        APP + "    instances: 1\n    instances: 2\n",
        "conveyor.yml:5:5: applications[0].instances: given twice (first on line 4)",
    ),
    (
        "applications:\n  - name: reports\n    command: !!python/name:os.system\n",
        "conveyor.yml:3:14: applications[0].command: expected a command line, got a value "
        "tagged tag:yaml.org,2002:python/name:os.system",
    ),
    (
        "applications:\n  - name: reports\n    command: [serve\n",
        "conveyor.yml:4:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)",
    ),
    (
        "applications:\n  - name: a\n  name: b\n",
        "conveyor.yml:3:3: invalid YAML: expected <block end>, but found '?' "
        "(while parsing a block collection)",
    ),
    ("", "conveyor.yml: the manifest is empty; it needs 'applications:'"),
    ("- name: iris\n", "conveyor.yml:1:1: expected a mapping, got a list"),
    (
        "apps:\n  - name: iris\n",
        "conveyor.yml:1:1: apps: unknown key; valid keys: applications, version\n"
        "conveyor.yml:1:1: applications: missing; list the apps under 'applications:'",
    ),
    ("applications: []\n", "conveyor.yml:1:15: applications: lists no apps"),
    (
        "applications:\n  name: iris\n",
        "conveyor.yml:2:3: applications: expected a list of apps, got a mapping",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ")[1][:40] for _, m in BAD])
def test_each_mistake_names_file_line_column_and_field(text: str, message: str) -> None:
    assert error_of(text) == message


def test_folder_outside_the_manifest_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "link").symlink_to(tmp_path / "elsewhere")
    (project / "conveyor.yml").write_text(APP + "    path: link\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(project / "conveyor.yml")
    assert str(caught.value).startswith(
        f"{project / 'conveyor.yml'}:4:11: applications[0].path: 'link' leads outside the "
        f"manifest's folder '{project.resolve()}'"
    )


def test_a_requirements_symlink_out_of_the_apps_folder_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "reports-app"
    app.mkdir()
    (tmp_path / "secret.txt").write_text("root:x:0:0\n")
    (app / "requirements.txt").symlink_to(tmp_path / "secret.txt")
    manifest = tmp_path / "conveyor.yml"
    manifest.write_text(APP + "    path: ./reports-app\n    requirements: requirements.txt\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    assert str(caught.value).startswith(
        f"{manifest}:5:19: applications[0].requirements: 'requirements.txt' leads outside the "
        "app's folder"
    )


def test_missing_folder_and_requirements_are_named(tmp_path: Path) -> None:
    manifest = tmp_path / "conveyor.yml"
    manifest.write_text(APP + "    path: ./reports-app\n")
    with pytest.raises(ManifestError, match=r":4:11: applications\[0\].path: './reports-app' is "
                        "not an existing folder"):  # fmt: skip
        load_manifest(manifest)
    (tmp_path / "reports-app").mkdir()
    manifest.write_text(APP + "    path: ./reports-app\n    requirements: uv.lock\n")
    with pytest.raises(ManifestError, match=r":5:19: applications\[0\].requirements: no file "
                        "'uv.lock' in"):  # fmt: skip
        load_manifest(manifest)


def test_a_model_file_resolves_beside_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "conveyor.yml"
    manifest.write_text("applications:\n  - name: iris\n    model: models/iris.onnx\n")
    with pytest.raises(ManifestError, match=r":3:12: applications\[0\].model: no model file"):
        load_manifest(manifest)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "iris.onnx").write_bytes(b"onnx")
    (app,) = load_manifest(manifest).applications
    assert app.model == str((tmp_path / "models" / "iris.onnx").resolve())


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the manifest") as caught:
        load_manifest(tmp_path / "conveyor.yml")
    assert caught.value.hint is not None
    (tmp_path / "conveyor.yml").write_bytes(b"applications:\n  - name: \xff\n")
    with pytest.raises(ManifestError, match=r"conveyor.yml: not UTF-8 text \(byte 24\)"):
        load_manifest(tmp_path / "conveyor.yml")
