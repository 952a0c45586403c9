"""Images built from real droplets, pushed to a real registry, read back with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

from conveyor.platform.images import (
    LABEL_LOCK,
    LABEL_REVISION,
    LABEL_SOURCE,
    BaseImage,
    ImageError,
    ImageRef,
    build_and_push,
)
from conveyor.platform.staging import Droplet, stage
from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import OciRegistry, skopeo

pytestmark = pytest.mark.slow

SIX = "six==1.17.0"  # in uv's cache on this machine: no download
MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"opt/conveyor/venv/lib/python{MINOR}/site-packages"


@pytest.fixture(scope="module")
def base(registry: OciRegistry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The tiny base image, pushed once: (reference, its layer's digest)."""
    layer = push_tiny_base(registry.host, "base/tiny", "1", tmp_path_factory.mktemp("base"))
    return f"{registry.host}/base/tiny:1", layer


def make_droplet(
    root: Path, main: str = "import six\nprint('hello from', six.__name__)\n"
) -> Droplet:
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "main.py").write_text(main)
    (app / "requirements.txt").write_text(f"{SIX}\n")
    return stage(app, app / "requirements.txt", root / "cache")


def push(
    droplet: Droplet,
    registry: OciRegistry,
    base: str,
    repo: str,
    lines: list[str],
    tag: str | None = None,
) -> ImageRef:
    return build_and_push(
        droplet,
        repository=f"{registry.host}/{repo}",
        base=base,
        labels={LABEL_REVISION: "3"},
        insecure=True,
        progress=lines.append,
        command="python main.py",
        tag=tag,
    )


def fetch(registry: OciRegistry, repo: str, kind: str, ref: str) -> bytes:
    headers = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    response = httpx.get(f"http://{registry.host}/v2/{repo}/{kind}/{ref}", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def test_the_same_droplet_twice_gives_one_image_pushed_once_on_mounted_base_layers(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path
) -> None:
    base_ref, base_layer = base
    droplet = make_droplet(tmp_path)
    first_lines: list[str] = []
    first = push(droplet, registry, base_ref, "ds/hello", first_lines)
    assert first.repository == f"{registry.host}/ds/hello"
    assert first.pinned == f"{registry.host}/ds/hello@{first.digest}"
    assert f"Base layer {base_layer[7:19]} mounted from base/tiny" in first_lines
    assert first_lines[-1] == f"Pushed {first.pinned}"

    # The registry mounted the base layer: a mount answered 201, and its bytes never came up.
    seen = registry.requests()
    mounts = [r for r in seen if f"mount={base_layer}" in r.uri and "/ds/hello/" in r.uri]
    assert [r.status for r in mounts] == [201]
    assert not [
        r
        for r in seen
        if r.method == "PUT" and f"digest={base_layer}" in r.uri and "/ds/hello/" in r.uri
    ]

    # Built again (a fresh scratch folder, other mtimes): the same digest, and nothing sent.
    before = len(registry.requests())
    second_lines: list[str] = []
    second = push(droplet, registry, base_ref, "ds/hello", second_lines)
    assert second == first
    assert second_lines[-1] == f"Image {first.pinned} is already in the registry: nothing to push"
    after = registry.requests()[before:]
    assert {r.method for r in after} <= {"GET", "HEAD"}


def test_config_lists_the_layers_diff_ids_labels_and_how_to_run_the_app(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path
) -> None:
    droplet = make_droplet(tmp_path)
    image = push(droplet, registry, base[0], "ds/config", [])
    manifest = json.loads(fetch(registry, "ds/config", "manifests", image.digest))
    config = json.loads(fetch(registry, "ds/config", "blobs", manifest["config"]["digest"]))
    # The registry does not check diff_ids: each must be the sha256 of its layer, uncompressed.
    diff_ids = []
    for layer in manifest["layers"]:
        blob = fetch(registry, "ds/config", "blobs", layer["digest"])
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        assert len(blob) == layer["size"]
        diff_ids.append("sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest())
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert len(diff_ids) == 3  # the base's one, the dependencies, the source

    labels = config["config"]["Labels"]
    assert labels[LABEL_REVISION] == "3"
    assert labels[LABEL_LOCK] == droplet.lock_digest
    assert labels[LABEL_SOURCE] == diff_ids[2]
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "exec python main.py"]
    env = config["config"]["Env"]
    assert "PATH=/opt/conveyor/venv/bin:/usr/local/bin:/usr/bin:/bin" in env
    assert "VIRTUAL_ENV=/opt/conveyor/venv" in env
    assert (
        f"PYTHON_VERSION={sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}" in env
    )


def test_skopeo_reads_the_image_back_and_its_files_run_the_app(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path
) -> None:
    droplet = make_droplet(tmp_path)
    image = push(droplet, registry, base[0], "ds/skopeo", [], tag="r3")
    tagged = f"docker://{registry.host}/ds/skopeo:r3"
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", tagged))
    assert inspected["Digest"] == image.digest
    assert inspected["Labels"][LABEL_LOCK] == droplet.lock_digest
    assert len(inspected["Layers"]) == 3

    layout = tmp_path / "layout"
    skopeo("copy", "--src-tls-verify=false", f"docker://{image.pinned}", f"oci:{layout}")
    # skopeo checks every blob's digest and size against the manifest as it copies.
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.digest]
    manifest = json.loads(_blob(layout, image.digest))
    rootfs = tmp_path / "rootfs"
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=__import__("io").BytesIO(_blob(layout, layer["digest"]))) as tar:
            tar.extractall(rootfs, filter="tar")
    assert (rootfs / "etc" / "os-release").exists()  # the base's
    assert (rootfs / "opt/conveyor/venv/bin/python").readlink() == Path("/usr/local/bin/python3")
    # The image's files run the app: its source with its installed packages.
    ran = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path[:0] = ['.', {str(rootfs / SITE)!r}]; import runpy; "
            "runpy.run_path('main.py')",
        ],
        cwd=rootfs / "app",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert ran.stdout.strip() == "hello from six"


def test_a_source_change_uploads_the_source_layer_only(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path
) -> None:
    first = push(make_droplet(tmp_path / "one"), registry, base[0], "ds/change", [])
    lines: list[str] = []
    second = push(
        make_droplet(tmp_path / "two", main="print('changed')\n"),
        registry,
        base[0],
        "ds/change",
        lines,
    )
    assert second.digest != first.digest
    assert any(line.startswith("The dependencies layer ") and "already" in line for line in lines)
    assert any(line.startswith("Uploaded the source layer ") for line in lines)
    assert any(line.startswith("Uploaded the config ") for line in lines)
    assert any(line.startswith("Base layer") and "already in ds/change" in line for line in lines)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def test_a_base_of_another_python_is_refused_before_anything_is_pushed(
    registry: OciRegistry, tmp_path: Path
) -> None:
    push_tiny_base(registry.host, "base/old", "1", tmp_path / "base", python="2.7.18")
    droplet = make_droplet(tmp_path)
    with pytest.raises(ImageError) as caught:
        push(droplet, registry, f"{registry.host}/base/old:1", "ds/refused", [])
    assert f"has Python 2.7.18 but the app was staged with Python {sys.version_info[0]}." in str(
        caught.value
    )
    assert not [r for r in registry.requests() if "/ds/refused/" in r.uri]


def test_a_missing_base_image_is_named(registry: OciRegistry, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"base/nothing:1 does not exist in the registry"):
        push(make_droplet(tmp_path), registry, f"{registry.host}/base/nothing:1", "ds/x", [])


def test_arm64_images_install_the_packages_for_arm64(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path
) -> None:
    push_tiny_base(registry.host, "base/arm", "1", tmp_path / "base", arch="arm64")
    droplet = make_droplet(tmp_path)
    with pytest.raises(ImageError, match=r"base/tiny:1 is for linux/amd64, not linux/arm64"):
        build_and_push(
            droplet,
            repository=f"{registry.host}/ds/arm",
            base=BaseImage(base[0], platform="linux/arm64"),
            labels={},
            insecure=True,
        )
    image = build_and_push(
        droplet,
        repository=f"{registry.host}/ds/arm",
        base=BaseImage(f"{registry.host}/base/arm:1", platform="linux/arm64"),
        labels={},
        insecure=True,
    )
    manifest = json.loads(fetch(registry, "ds/arm", "manifests", image.digest))
    config = json.loads(fetch(registry, "ds/arm", "blobs", manifest["config"]["digest"]))
    assert config["architecture"] == "arm64"
    assert BaseImage.for_python("3.11.7") == BaseImage("python:3.11-slim")


def test_a_base_on_another_registry_is_copied_layer_by_layer(
    registry: OciRegistry, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from tests.oci_registry import start

    other = start(tmp_path_factory.mktemp("other-registry"))
    try:
        layer = push_tiny_base(other.host, "vendor/py", "1", tmp_path / "base")
        lines: list[str] = []
        image = push(
            make_droplet(tmp_path), registry, f"{other.host}/vendor/py:1", "ds/copied", lines
        )
    finally:
        other.stop()
    assert any(
        line.startswith(f"Base layer {layer[7:19]} copied from {other.host}/vendor/py")
        for line in lines
    )
    manifest = json.loads(fetch(registry, "ds/copied", "manifests", image.digest))
    assert manifest["layers"][0]["digest"] == layer
    assert fetch(registry, "ds/copied", "blobs", layer)  # now served by this registry


def test_kept_dependency_layers_give_the_same_image_without_installing_again(
    registry: OciRegistry, base: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.platform.images import build as build_module

    droplet = make_droplet(tmp_path)
    cache = tmp_path / "image-layers"

    def push_kept() -> ImageRef:
        return build_and_push(
            droplet,
            repository=f"{registry.host}/ds/kept",
            base=base[0],
            labels={},
            insecure=True,
            cache=cache,
        )

    uncached = build_and_push(
        droplet, repository=f"{registry.host}/ds/kept", base=base[0], labels={}, insecure=True
    )
    assert push_kept() == uncached
    assert len(list(cache.iterdir())) == 1

    def no_uv(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("uv ran although the dependencies layer was kept")

    monkeypatch.setattr(build_module, "run_uv", no_uv)
    assert push_kept() == uncached


def test_a_multi_platform_base_gives_the_platform_asked_for_or_says_which_it_has(
    registry: OciRegistry, tmp_path: Path
) -> None:
    from conveyor.platform.images.distribution import Registry

    push_tiny_base(registry.host, "base/multi", "amd64", tmp_path / "base")
    with Registry(registry.host, insecure=True) as client:
        body, media_type = client.get_manifest("base/multi", "amd64")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": media_type,
                        "digest": digest,
                        "size": len(body),
                        "platform": {"os": "linux", "architecture": "amd64"},
                    }
                ],
            }
        ).encode()
        client.put_manifest("base/multi", "1", index, "application/vnd.oci.image.index.v1+json")
    droplet = make_droplet(tmp_path)
    image = push(droplet, registry, f"{registry.host}/base/multi:1", "ds/multi", [])
    manifest = json.loads(fetch(registry, "ds/multi", "manifests", image.digest))
    assert len(manifest["layers"]) == 3
    with pytest.raises(ImageError, match=r"has no linux/arm64 image \(it has linux/amd64\)"):
        build_and_push(
            droplet,
            repository=f"{registry.host}/ds/multi",
            base=BaseImage(f"{registry.host}/base/multi:1", platform="linux/arm64"),
            labels={},
            insecure=True,
        )
