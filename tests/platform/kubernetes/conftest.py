"""A platform with the kmock API's kubeconfig and a target ``prod`` on it, per test module."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import OciRegistry, start
from tests.platform.control import Platform, running_platform
from tests.waiting import eventually

from .fake_api import CONTEXT, NAMESPACE, FakeApi, fake_api


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, FakeApi]]:
    root = tmp_path_factory.mktemp("k8s-cli")
    with fake_api(root) as api, running_platform(root / "platform") as platform:
        platform.extra_env["KUBECONFIG"] = str(api.kubeconfig)
        platform.stop()
        platform.start()  # again, with the kubeconfig in its environment
        platform.cli(
            "target", "add", "prod", "--kubernetes", "--context", CONTEXT,
            "--namespace", NAMESPACE, "--registry", "registry.example.com/ds",
        )  # fmt: skip
        _manifest(platform.project)
        yield platform, api


def _manifest(project: Path) -> None:
    (project / "app.py").write_text("print('hello')\n")
    (project / "conveyor.yml").write_text(
        "applications:\n"
        "  - name: triage\n"
        "    command: python app.py\n"
        "    instances: 2\n"
        "    routes:\n"
        "      - route: triage.example.com\n"
    )


def registry_or_skip(folder: Path) -> OciRegistry:
    """A real `docker-registry` on a free loopback port (stop it); skipped when missing."""
    try:
        return start(folder)
    except RuntimeError as exc:
        if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc}; CONVEYOR_REQUIRE_SERVICES=1 requires it")
        pytest.skip(str(exc))


@contextmanager
def registry_target(platform: Platform, folder: Path, name: str) -> Iterator[OciRegistry]:
    """A target ``name`` whose registry is a real `docker-registry` (``HOST/ds``) holding the
    tiny base image (``HOST/base/NAME:1``) its apps are built on; the registry is stopped
    afterwards."""
    registry = registry_or_skip(folder / "registry")
    try:
        push_tiny_base(registry.host, f"base/{name}", "1", folder / "base")
        platform.cli(
            "target", "add", name, "--kubernetes", "--context", CONTEXT,
            "--namespace", NAMESPACE, "--registry", f"{registry.host}/ds",
            "--base-image", f"{registry.host}/base/{name}:1",
        )  # fmt: skip
        yield registry
    finally:
        registry.stop()


def unreachable_target(platform: Platform, name: str) -> str:
    """Add a target whose registry (and base image) is a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    platform.cli(
        "target", "add", name, "--kubernetes", "--context", CONTEXT,
        "--namespace", NAMESPACE, "--registry", f"{closed}/ds", "--base-image", f"{closed}/b:1",
    )  # fmt: skip
    return closed


#: A Deployment of 2 replicas, all updated and available: what its controller reports.
READY = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


def push_playing(
    platform: Platform,
    api: FakeApi,
    *args: str,
    app: str = "triage",
    after: str = "Ingress",
    status: Mapping[str, int] = READY,
    target: str = "prod",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`conveyor push --target TARGET ...` while the test plays the Deployment controller:
    ``app``'s replicas report ``status`` once its object of kind ``after`` is applied."""

    def controller() -> None:
        eventually(lambda: app in api.objects(after), what=f"the {after} applied")
        api.set_status("Deployment", app, dict(status))

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        return platform.cli("push", "--target", target, *args, timeout=timeout)
    finally:
        playing.join(60)
