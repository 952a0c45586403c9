"""``conveyor image build``: a pushed app's running revision, built and pushed by the platform."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import OciRegistry, skopeo
from tests.platform.control import Platform, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


def test_image_build_prints_the_pinned_image_of_the_running_revision(
    platform: Platform, registry: OciRegistry, tmp_path: Path
) -> None:
    push_tiny_base(registry.host, "base/cli", "1", tmp_path / "base")
    platform.cli("push", "-f", str(platform.write_hello_app("hello", instances=1)))
    base = f"{registry.host}/base/cli:1"
    build = ("image", "build", "hello", "--registry", f"{registry.host}/ds", "--base", base)

    built = platform.cli(*build, "--tag", "v1")
    pinned = built.stdout.strip()
    assert pinned.startswith(f"{registry.host}/ds/hello@sha256:")
    assert f"hello: Pushed {pinned}" in built.stderr
    assert "hello: Base layer " in built.stderr

    again = platform.cli(*build, "--tag", "v1")
    assert again.stdout.strip() == pinned
    assert "is already in the registry: nothing to push" in again.stderr

    # The platform kept the dependencies layer for the next image; gc removes it once unused.
    gc = platform.cli("droplets", "gc", "--min-age", "0").stdout
    assert any("/image-layers/" in line for line in gc.splitlines() if line.startswith("removed"))

    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/ds/hello:v1")
    )
    assert inspected["Digest"] == pinned.split("@")[1]
    assert inspected["Labels"]["conveyor.app"] == "hello"
    assert inspected["Labels"]["conveyor.revision"] == "1"


def test_image_build_of_an_unknown_app_or_a_refusing_registry_says_why(
    platform: Platform, registry: OciRegistry
) -> None:
    missing = platform.cli(
        "image", "build", "nope", "--registry", f"{registry.host}/ds", check=False
    )
    assert missing.returncode != 0
    assert "nope" in missing.stderr
    assert "Traceback" not in missing.stderr

    platform.cli("push", "-f", str(platform.write_hello_app("solo", instances=1)))
    absent = platform.cli(
        "image",
        "build",
        "solo",
        "--registry",
        f"{registry.host}/ds",
        "--base",
        f"{registry.host}/base/none:1",
        check=False,
    )
    assert absent.returncode != 0
    assert f"the image {registry.host}/base/none:1 does not exist in the registry" in absent.stderr
    assert "Traceback" not in absent.stderr


def test_image_runtime_prints_the_pinned_runtime_image_built_once(
    platform: Platform, registry: OciRegistry, tmp_path: Path
) -> None:
    push_tiny_base(registry.host, "base/runtime", "1", tmp_path / "base")
    build = (
        "image", "runtime", "--registry", f"{registry.host}/ds",
        "--base", f"{registry.host}/base/runtime:1", "--extra", "s3",
    )  # fmt: skip
    built = platform.cli(*build, timeout=600)
    pinned = built.stdout.strip()
    assert pinned.startswith(f"{registry.host}/ds/conveyor-runtime@sha256:")
    assert "runtime: Building the runtime layer: Conveyor " in built.stderr
    assert f"runtime: Pushed {pinned}" in built.stderr

    again = platform.cli(*build)
    assert again.stdout.strip() == pinned
    assert "is already in the registry: nothing to push" in again.stderr

    unknown = platform.cli("image", "runtime", "--registry", f"{registry.host}/ds",
                           "--extra", "gpu", check=False)  # fmt: skip
    assert unknown.returncode != 0
    assert "Conveyor has no extra 'gpu'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
