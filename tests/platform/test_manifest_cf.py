"""Cloud Foundry manifests as CF's documentation writes them, and buildpack-style detection."""

from __future__ import annotations

import textwrap
from pathlib import Path, PurePosixPath

import pytest

from conveyor.platform.errors import ManifestError
from conveyor.platform.manifest import find_manifest, load_manifest, parse_manifest
from conveyor.platform.spec import AppSpec, HealthCheckSpec, RouteSpec

# The attributes of CF's "App manifest attribute reference", as its examples write them.
CF_MANIFEST = """\
---
version: 1
applications:
- name: my-app
  path: .
  buildpacks:
  - python_buildpack
  stack: cflinuxfs4
  command: gunicorn app:app
  disk_quota: 1G
  memory: 256M
  instances: 2
  timeout: 80
  health-check-type: http
  health-check-http-endpoint: /health
  health-check-invocation-timeout: 5
  routes:
  - route: my-app.example.com/api
  - route: www.example.com
  services:
  - my-db
  - name: my-cache
    parameters:
      max_connections: 10
  env:
    LOG_LEVEL: info
  processes:
  - type: web
    instances: 3
  - type: worker
    command: python worker.py
    memory: 128M
    health-check-type: process
"""


def cf_app(tmp_path: Path, text: str = CF_MANIFEST, name: str = "manifest.yml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def error_of(text: str, base_dir: Path | None = None) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(textwrap.dedent(text), "manifest.yml", base_dir=base_dir)
    return str(caught.value)


def test_a_documented_cf_manifest_maps_onto_apps(tmp_path: Path) -> None:
    manifest = load_manifest(cf_app(tmp_path))
    web, worker = manifest.applications
    assert web.name == "my-app"
    assert (web.command, web.instances, web.memory, web.disk) == (
        "gunicorn app:app",
        3,  # the web process's own instances win over the app's
        256 * 1024**2,
        1024**3,
    )
    assert web.health_check == HealthCheckSpec(
        type="http", endpoint="/health", timeout=80, invocation_timeout=5
    )
    assert web.routes == (
        RouteSpec(host="my-app.example.com", path="/api"),
        RouteSpec(host="www.example.com"),
    )
    assert web.services == ("my-db", "my-cache")
    assert dict(web.service_parameters["my-cache"]) == {"max_connections": 10}
    assert dict(web.env) == {"LOG_LEVEL": "info"}
    # Other process types are apps of the same push: same source, no route.
    assert (worker.name, worker.command, worker.routes) == ("my-app-worker", "python worker.py", ())
    assert (worker.memory, worker.health_check.type, worker.path) == (
        128 * 1024**2,
        "process",
        web.path,
    )
    assert worker.services == web.services
    assert manifest.ignored == ("buildpacks (Conveyor stages with uv)", "stack")
    # `conveyor push my-app` pushes every process of it, as `cf push my-app` does.
    assert manifest.selected(["my-app"]) == [web, worker]
    assert manifest.selected(["my-app-worker"]) == [worker]


def test_the_spec_survives_the_push_body() -> None:
    spec = AppSpec(
        name="a",
        command="serve",
        disk=1024,
        services=("db",),
        service_parameters={"db": {"pool": 5}},
        health_check=HealthCheckSpec(invocation_timeout=3),
    )
    assert AppSpec.from_json("a", spec.to_json()) == spec


@pytest.mark.parametrize(
    ("attributes", "routes"),
    [
        ("no-route: true", ()),
        ("default-route: true", None),
        ("random-route: false", None),
    ],
)
def test_route_flags(attributes: str, routes: object) -> None:
    text = f"applications:\n- name: a\n  command: serve\n  {attributes}\n"
    assert parse_manifest(text, "manifest.yml").applications[0].routes == routes


def test_a_random_route_is_a_host_of_its_own_that_a_second_push_keeps(tmp_path: Path) -> None:
    path = cf_app(tmp_path, "applications:\n- name: a\n  command: serve\n  random-route: true\n")
    first, again = (load_manifest(path).applications[0].routes for _ in range(2))
    assert first == again
    assert first is not None
    [route] = first
    assert route.path is None
    assert (route.host or "").startswith("a-")
    assert (route.host or "").endswith(".localhost")


def test_none_is_cf_older_name_for_a_process_check() -> None:
    text = "applications:\n- name: a\n  command: serve\n  health-check-type: none\n"
    assert parse_manifest(text, "manifest.yml").applications[0].health_check.type == "process"


def test_readiness_checks_written_the_cf_way() -> None:
    text = (
        "applications:\n- name: a\n  command: serve\n  readiness-health-check-type: http\n"
        "  readiness-health-check-http-endpoint: /ready\n  readiness-health-check-interval: 5\n"
    )
    ready = parse_manifest(text, "manifest.yml").applications[0].readiness_check
    assert ready == HealthCheckSpec(type="http", endpoint="/ready", interval=5)


def test_every_error_of_a_manifest_is_reported_at_once() -> None:
    message = error_of(
        """\
        applications:
        - name: a
          command: serve
          disk_quota: lots
          instances: two
          health-check-type: tcp
          routes:
          - route: example.com:8080
        - name: B
        """
    )
    assert message.splitlines() == [
        "manifest.yml:4:15: applications[0].disk_quota: expected a size like 512M or 1G, "
        "got 'lots'",
        "manifest.yml:5:14: applications[0].instances: expected a whole number ≥ 0, got 'two'",
        "manifest.yml:6:22: applications[0].health-check-type: expected port, process or http, "
        "got 'tcp'",
        "manifest.yml:8:12: applications[0].routes[0].route: 'example.com:8080' has a port: "
        "TCP routes are not supported",
        "manifest.yml:9:3: applications[1]: give exactly one of 'model' (a model app) or "
        "'command' (or a Procfile with a 'web:' line in the app's folder)",
        "manifest.yml:9:9: applications[1].name: 'B' is not a valid app name; use 1-63 "
        "lower-case letters, digits and '-', starting and ending with a letter or digit "
        "(it becomes a host name)",
    ]


CF_BAD = [
    (
        "applications:\n- name: a\n  docker: {image: nginx}\n  command: serve\n",
        "manifest.yml:3:11: applications[0].docker: Conveyor runs an app from its source "
        "folder; it does not run docker images",
    ),
    (
        "applications:\n- name: a\n  command: serve\n  no-route: true\n"
        "  routes: [{route: a.com}]\n",
        "manifest.yml:4:13: applications[0].no-route: contradicts the 'routes' listed; remove one",
    ),
    (
        "applications:\n- name: a\n  command: serve\n  routes: [{route: a.com, path: /x}]\n",
        "manifest.yml:4:33: applications[0].routes[0].path: give either 'route' or "
        "'host'/'path', not both",
    ),
    (
        "applications:\n- name: a\n  command: serve\n  health-check: {type: http}\n"
        "  health-check-type: port\n",
        "manifest.yml:5:22: applications[0].health-check-type: give either a 'health-check:' "
        "block or Cloud Foundry's health-check-* keys, not both",
    ),
    (
        "applications:\n- name: a\n  command: serve\n  services: [{parameters: {a: 1}}]\n",
        "manifest.yml:4:14: applications[0].services[0]: missing 'name'",
    ),
    (
        "applications:\n- name: a\n  command: serve\n  processes: [{type: worker}]\n",
        "manifest.yml:4:22: applications[0].processes[0].type: process 'worker' needs 'command' "
        "(or a Procfile line 'worker: ...')",
    ),
    (
        "version: 2\napplications:\n- {name: a, command: x}\n",
        "manifest.yml:1:10: version: only manifest version 1 exists, got '2'",
    ),
]


@pytest.mark.parametrize(("text", "message"), CF_BAD)
def test_cf_mistakes_name_file_line_column_and_field(text: str, message: str) -> None:
    assert error_of(text) == message


def test_manifest_yml_is_found_and_conveyor_yml_comes_first(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest \(conveyor.yml, manifest.yml"):
        find_manifest(tmp_path)
    cf_app(tmp_path)
    assert find_manifest(tmp_path) == tmp_path / "manifest.yml"
    cf_app(tmp_path, name="conveyor.yml")
    assert find_manifest(tmp_path) == tmp_path / "conveyor.yml"


# -- what a buildpack would detect ------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (["requirements.txt"], "requirements.txt"),
        (["pyproject.toml"], "pyproject.toml"),
        (["pyproject.toml", "uv.lock", "requirements.txt"], "uv.lock"),
        (["pyproject.toml", "requirements.txt"], "requirements.txt"),
        ([], None),
    ],
)
def test_requirements_are_found_without_a_requirements_key(
    tmp_path: Path, files: list[str], found: str | None
) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    path = cf_app(tmp_path, "applications:\n- name: a\n  command: serve\n")
    app = load_manifest(path).applications[0]
    assert app.requirements == (None if found is None else PurePosixPath(found))


def test_a_procfile_gives_the_commands_the_manifest_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "# as Heroku writes it\nweb: gunicorn app:app\nworker: python worker.py\n"
    )
    text = "applications:\n- name: a\n  processes: [{type: web}, {type: worker}]\n"
    web, worker = load_manifest(cf_app(tmp_path, text)).applications
    assert (web.command, worker.command) == ("gunicorn app:app", "python worker.py")


def test_a_broken_procfile_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web gunicorn app:app\n")
    with pytest.raises(ManifestError, match=r"Procfile:1: expected 'type: command'"):
        load_manifest(cf_app(tmp_path, "applications:\n- name: a\n"))
