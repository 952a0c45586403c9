"""`conveyor target add|list|remove` and `conveyor k8s render` against a real platform."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml  # type: ignore[import-untyped]

from tests.platform.control import Platform, running_platform

pytestmark = pytest.mark.slow

ADD = (
    "target", "add", "prod", "--kubernetes", "--context", "my-cluster", "--namespace", "ds-team",
    "--registry", "registry.example.com/ds", "--artifact-root", "s3://conveyor-artifacts/ds",
)  # fmt: skip


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("k8s-targets")) as running:
        yield running


def test_a_target_is_added_listed_and_removed(platform: Platform) -> None:
    added = platform.cli(*ADD)
    assert "target prod added: Kubernetes, context my-cluster, namespace ds-team" in added.stdout
    listed = platform.cli("target", "list").stdout.splitlines()
    assert listed[0].startswith("local  this machine")
    assert "prod  kubernetes  context my-cluster  namespace ds-team" in listed[1]

    again = platform.cli(*ADD, check=False)
    assert again.returncode != 0
    assert "a target named 'prod' exists already" in again.stderr
    assert "target prod replaced" in platform.cli(*ADD, "--replace").stdout

    assert platform.cli("target", "remove", "prod").stdout.strip() == "target prod removed"
    assert "prod" not in platform.cli("target", "list").stdout
    gone = platform.cli("target", "remove", "prod", check=False)
    assert gone.returncode != 0
    assert "there is no target named 'prod'" in gone.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--namespace", "DS_team"), "namespace 'DS_team' is not a DNS label"),
        (("--registry", "nohost"), "registry 'nohost' is not HOST[:PORT]/REPOSITORY"),
        (("--artifact-root", "/srv/artifacts"), "is not an s3:// URL"),
        (("--routing", "gateway"), "needs the gateway's name"),
    ],
)
def test_bad_target_settings_are_refused_with_the_reason(
    platform: Platform, change: tuple[str, str], message: str
) -> None:
    args = list(ADD)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args.extend(change)
    args[2] = "bad"
    result = platform.cli(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_local_target_cannot_be_removed_or_shadowed(platform: Platform) -> None:
    removed = platform.cli("target", "remove", "local", check=False)
    assert "'local' is the built-in target" in removed.stderr
    args = list(ADD)
    args[2] = "local"
    added = platform.cli(*args, check=False)
    assert "'local' is the built-in target" in added.stderr


def test_render_prints_the_objects_of_the_manifest(platform: Platform) -> None:
    platform.cli(*ADD, "--replace")
    (platform.project / "conveyor.yml").write_text(
        "applications:\n"
        "  - name: triage\n"
        "    command: python app.py\n"
        "    instances: 2\n"
        "    memory: 256M\n"
        "    routes:\n"
        "      - route: triage.example.com\n"
    )
    rendered = platform.cli("k8s", "render", "--target", "prod").stdout
    objects = list(yaml.safe_load_all(rendered))
    assert [o["kind"] for o in objects] == [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "Ingress",
    ]
    deployment = objects[0]
    assert deployment["metadata"]["namespace"] == "ds-team"
    assert deployment["spec"]["replicas"] == 2
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == "registry.example.com/ds/triage:latest"
    assert box["resources"]["limits"]["memory"] == "256Mi"
    assert objects[3]["spec"]["rules"][0]["host"] == "triage.example.com"

    pinned = "registry.example.com/ds/triage@sha256:" + "0" * 64
    again = platform.cli("k8s", "render", "--target", "prod", "--image", f"triage={pinned}")
    assert f"image: {pinned}" in again.stdout


def test_render_refuses_what_the_cluster_cannot_express(platform: Platform) -> None:
    platform.cli(*ADD, "--replace")
    (platform.project / "conveyor.yml").write_text(
        "applications:\n"
        "  - name: triage\n"
        "    command: python app.py\n"
        "    routes:\n"
        "      - path: /triage\n"
        "        strip-prefix: true\n"
    )
    result = platform.cli("k8s", "render", "--target", "prod", check=False)
    assert result.returncode != 0
    assert "app 'triage': route '/triage' strips its prefix" in result.stderr
    local = platform.cli("k8s", "render", "--target", "local", check=False)
    assert "the local target runs processes" in local.stderr
