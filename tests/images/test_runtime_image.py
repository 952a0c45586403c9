"""The runtime image: this environment's Conveyor copied into a layer, pushed, read back, run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import __version__
from conveyor.errors import UsageError
from conveyor.platform.images import ImageError, ImageRef, build_and_push
from conveyor.platform.images.clash import LABEL_PACKAGES
from conveyor.platform.images.runtime import (
    LABEL_ENVIRONMENT,
    LABEL_VERSION,
    build_runtime,
    read_environment,
    server_platform,
)
from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import OciRegistry, skopeo

pytestmark = pytest.mark.slow

MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
VENV = "opt/conveyor/venv"
SITE = f"{VENV}/lib/python{MINOR}/site-packages"


@dataclass(frozen=True)
class Built:
    base: str
    image: ImageRef
    lines: list[str]
    cache: Path


@pytest.fixture(scope="module")
def built(registry: OciRegistry, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The runtime image, built once on the tiny base (this interpreter's PYTHON_VERSION)."""
    push_tiny_base(registry.host, "base/tiny", "1", tmp_path_factory.mktemp("base"))
    base = f"{registry.host}/base/tiny:1"
    lines: list[str] = []
    cache = tmp_path_factory.mktemp("layers")
    image = build_runtime(
        f"{registry.host}/ds", base=base, insecure=True, progress=lines.append, cache=cache
    )
    return Built(base, image, lines, cache)


def test_the_same_environment_gives_one_image_pushed_once(
    built: Built, registry: OciRegistry
) -> None:
    assert built.image.repository == f"{registry.host}/ds/conveyor-runtime"
    assert f"Pushed {built.image.pinned}" in built.lines
    assert any(line.startswith("Uploaded the runtime layer ") for line in built.lines)

    # Built again from nothing kept: the same bytes, so the same digest, and nothing to push.
    again: list[str] = []
    rebuilt = build_runtime(
        f"{registry.host}/ds", base=built.base, insecure=True, progress=again.append
    )
    assert rebuilt == built.image
    assert f"Image {built.image.pinned} is already in the registry: nothing to push" in again

    # From the kept layer: the same image again.
    kept = build_runtime(f"{registry.host}/ds", base=built.base, insecure=True, cache=built.cache)
    assert kept == built.image


def test_skopeo_reads_its_labels_and_one_layer_on_the_base(
    built: Built, registry: OciRegistry
) -> None:
    environment = read_environment()
    tag = f"{__version__}-{environment.digest[:12]}"
    tagged = f"docker://{registry.host}/ds/conveyor-runtime:{tag}"
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", tagged))
    assert inspected["Digest"] == built.image.digest
    assert inspected["Labels"][LABEL_VERSION] == __version__
    assert inspected["Labels"][LABEL_ENVIRONMENT] == environment.digest
    listed = inspected["Labels"][LABEL_PACKAGES].split()
    assert f"conveyor=={__version__}" in listed
    assert f"scikit-learn=={environment.packages['scikit-learn']}" in listed
    assert len(listed) == len(environment.installed)
    assert inspected["Labels"]["org.opencontainers.image.base.name"] == built.base
    assert len(inspected["Layers"]) == 2  # the tiny base's and the runtime's
    assert f"PATH=/{VENV}/bin:/usr/local/bin:/usr/bin:/bin" in inspected["Env"]


def _runtime_layer(built: Built, layout: Path) -> tarfile.TarFile:
    skopeo("copy", "--src-tls-verify=false", f"docker://{built.image.pinned}", f"oci:{layout}")
    digest = built.image.digest.split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_bytes())
    last = manifest["layers"][-1]["digest"].split(":", 1)[1]
    return tarfile.open(fileobj=io.BytesIO((layout / "blobs" / "sha256" / last).read_bytes()))


def test_its_layer_holds_conveyor_its_packages_and_a_conveyor_script_that_runs(
    built: Built, tmp_path: Path
) -> None:
    with _runtime_layer(built, tmp_path / "layout") as tar:
        names = set(tar.getnames())
        root = tmp_path / "rootfs"
        tar.extractall(root, filter="tar")
    for package in ("conveyor", "click", "fastapi", "uvicorn", "numpy", "sklearn", "boto3"):
        assert f"{SITE}/{package}/__init__.py" in names, package
    assert f"{SITE}/conveyor/cli/main.py" in names
    assert any(n.startswith(f"{SITE}/conveyor-{__version__}.dist-info/") for n in names)
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert not [n for n in names if n.startswith(f"{SITE}/scipy/") and "/tests/" in n]
    assert not [n for n in names if n.endswith(".pth")]  # no editable install's path here
    script = (root / VENV / "bin" / "conveyor").read_text()
    assert script.startswith(f"#!/{VENV}/bin/python\n")
    assert (root / VENV / "bin" / "python").readlink() == Path("/usr/local/bin/python3")

    # Run it: the environment's python pointed at this machine's interpreter (the image's
    # would be /usr/local/bin/python3), so the extracted site-packages are its only packages.
    venv = root / VENV
    interpreter = Path(os.path.realpath(sys.executable))
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to(interpreter)
    config = (venv / "pyvenv.cfg").read_text().splitlines()
    (venv / "pyvenv.cfg").write_text(
        "\n".join(f"home = {interpreter.parent}" if c.startswith("home") else c for c in config)
    )
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(venv / "bin" / "python"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert __version__ in run(str(venv / "bin" / "conveyor"), "--version")
    where = run("-c", "import conveyor, click, sklearn; print(conveyor.__file__)").strip()
    assert Path(where).is_relative_to(root / SITE)


def test_a_base_of_another_python_or_platform_is_refused_naming_both(
    registry: OciRegistry, tmp_path: Path
) -> None:
    push_tiny_base(registry.host, "base/old", "1", tmp_path / "old", python="2.7.18")
    mine = ".".join(map(str, sys.version_info[:3]))
    with pytest.raises(ImageError) as old:
        build_runtime(f"{registry.host}/refused", base=f"{registry.host}/base/old:1", insecure=True)
    assert f"has Python 2.7.18 but this server runs Python {mine}" in str(old.value)

    here = server_platform()
    other = "arm64" if here == "linux/amd64" else "amd64"
    push_tiny_base(registry.host, "base/other", "1", tmp_path / "other", arch=other)
    with pytest.raises(ImageError) as foreign:
        build_runtime(
            f"{registry.host}/refused", base=f"{registry.host}/base/other:1", insecure=True
        )
    assert f"is for linux/{other}, not {here}" in str(foreign.value)
    assert not [r for r in registry.requests() if "/refused/" in r.uri]


def test_an_unknown_extra_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"Conveyor has no extra 'gpu'; its extras are .*kafka"):
        read_environment(["gpu"])


def model_droplet(root: Path, lock: str) -> Path:
    """A model app's droplet as one folder: its files, and its environment's resolved lock."""
    (root / "source").mkdir(parents=True)
    (root / "source" / "model.skops").write_bytes(b"not read while building")
    (root / "venv").mkdir()
    (root / "venv" / "conveyor-lock.txt").write_text(lock)
    (root / "venv" / "pyvenv.cfg").write_text(
        f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
    )
    return root


def test_an_app_pinning_a_runtime_package_at_another_version_is_refused_before_a_push(
    built: Built, registry: OciRegistry, tmp_path: Path
) -> None:
    six = read_environment().packages["six"]
    other = "1.16.0" if six != "1.16.0" else "1.15.0"
    droplet = model_droplet(tmp_path, f"attrs==25.1.0\nsix=={other}\n")
    with pytest.raises(ImageError) as refused:
        build_and_push(
            droplet,
            repository=f"{registry.host}/apps/clash",
            base=built.image.pinned,
            labels={},
            insecure=True,
        )
    assert str(refused.value).startswith(
        f"the app's requirements pin six {other}, but the runtime image {built.image.pinned} "
        f"it is built on has six {six}: installed over Conveyor's own packages"
    )
    assert f"(six=={six})" in (refused.value.hint or "")
    assert not [r for r in registry.requests() if "/apps/clash/" in r.uri]


def test_a_target_building_its_runtime_image_refuses_the_clash_before_pushing_it(
    built: Built, registry: OciRegistry, tmp_path: Path
) -> None:
    from conveyor.platform.kubernetes.config import KubernetesConfig
    from conveyor.platform.kubernetes.target import KIND_LABEL
    from conveyor.server.cluster_apps import image_builders

    config = KubernetesConfig(
        context=None, namespace="ds", registry=f"{registry.host}/team", base_image=built.base
    )
    droplet = model_droplet(tmp_path, "six==1.0.0\n")
    builder = image_builders(tmp_path / "cache")(config)
    labels = {"app.kubernetes.io/name": "scorer", KIND_LABEL: "model"}
    with pytest.raises(ImageError, match=r"pin six 1\.0\.0, but the runtime image of this"):
        builder({"venv": str(droplet / "venv"), "source": str(droplet / "source")}, labels)
    assert not [r for r in registry.requests() if "/team/" in r.uri]  # not even the runtime


def test_an_app_adding_its_own_packages_is_built_on_the_runtime_image(
    built: Built, registry: OciRegistry, tmp_path: Path
) -> None:
    six = read_environment().packages["six"]
    # six at the runtime's own version (written 1.17 for 1.17.0 would pass too); iniconfig is
    # only the app's (in uv's cache on this machine: no download).
    droplet = model_droplet(tmp_path, f"iniconfig==2.3.1\nsix=={six}\n")
    lines: list[str] = []
    image = build_and_push(
        droplet,
        repository=f"{registry.host}/apps/added",
        base=built.image.pinned,
        labels={},
        insecure=True,
        progress=lines.append,
    )
    assert lines[-1] == f"Pushed {image.pinned}"
    layout = tmp_path / "layout"
    skopeo("copy", "--src-tls-verify=false", f"docker://{image.pinned}", f"oci:{layout}")
    manifest = json.loads((layout / "blobs" / "sha256" / image.digest[7:]).read_bytes())
    assert len(manifest["layers"]) == 4  # the base's, the runtime's, the app's two
    dependencies = manifest["layers"][2]["digest"][7:]
    blob = (layout / "blobs" / "sha256" / dependencies).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = set(tar.getnames())
    assert f"{SITE}/iniconfig/__init__.py" in names
    assert f"{SITE}/six-{six}.dist-info/METADATA" in names
