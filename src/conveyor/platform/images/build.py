"""From a droplet to image layers, a config and a manifest (no network: see :mod:`.push`).

The image holds the app in two layers on top of the base image's:

1. **dependencies**: an environment at ``/opt/conveyor/venv`` whose packages uv
   installs *for the image's platform* from the droplet's resolved lock
   (``uv pip install --no-deps --python-platform x86_64-manylinux_2_28
   --python-version 3.11 --target …``), with ``bin/python`` a link to the base
   image's interpreter. Installing (rather than copying the droplet's own
   environment) keeps the host's paths out of the image and works for an
   arm64 cluster built from an amd64 laptop; uv takes the wheels from its cache,
   so for a droplet staged here it downloads nothing.
2. **source**: the droplet's source snapshot at ``/app``, the working folder.

Both are reproducible (:mod:`.layers`), so the same droplet gives the same
digests, and a push after a source change uploads only the source layer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.platform.errors import ImageError
from conveyor.platform.images.layers import Entry, Layer, cached_layer, write_layer
from conveyor.platform.images.reference import BaseImage
from conveyor.platform.staging import Droplet
from conveyor.uvtool import run_uv

__all__ = [
    "APP_DIR",
    "LABEL_LOCK",
    "LABEL_SOURCE",
    "OCI_CONFIG",
    "VENV_DIR",
    "AppLayers",
    "DropletParts",
    "app_config",
    "app_layers",
    "droplet_parts",
    "image_config",
    "image_manifest",
    "revision_droplet",
    "venv_frame",
]

APP_DIR = "/app"
VENV_DIR = "/opt/conveyor/venv"
LABEL_LOCK = "conveyor.lock-digest"
LABEL_SOURCE = "conveyor.source-digest"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: Docker's layer types are the same bytes as OCI's; an OCI manifest names them the OCI way.
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_LAYER_TYPES = {_DOCKER_LAYER + ".gzip": _OCI_LAYER + "+gzip", _DOCKER_LAYER: _OCI_LAYER}
_UV_PLATFORMS = {
    "linux/amd64": "x86_64-manylinux_2_28",
    "linux/arm64": "aarch64-manylinux_2_28",
    "linux/arm64/v8": "aarch64-manylinux_2_28",
}
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The layers' mtime (layers.EPOCH) in the config's words.
_CREATED = "1970-01-01T00:00:00Z"
_LOCK_NAME = "conveyor-lock.txt"
#: Bumped whenever what goes into the dependencies layer changes (cached layers are keyed by it).
_FORMAT = 1


@dataclass(frozen=True)
class DropletParts:
    """What an image is made of: the source snapshot and, if any, the resolved lock."""

    source: Path
    #: The resolved requirements (one pin per line, index options kept); "" for none.
    lock: str
    lock_digest: str
    #: The Python version the droplet was staged with (``3.11.7``), None if it has no env.
    python_version: str | None


@dataclass(frozen=True)
class AppLayers:
    """The app's two layers, in order."""

    dependencies: Layer
    source: Layer

    @property
    def all(self) -> list[Layer]:
        return [self.dependencies, self.source]


def droplet_parts(droplet: Path | Droplet) -> DropletParts:
    """Read a droplet: a staged :class:`Droplet`, or a folder.

    A folder is either ``source/`` beside an optional ``venv/`` (a droplet laid out as
    one folder), or an app's files themselves (no dependencies: a model app's folder).
    """
    if isinstance(droplet, Droplet):
        venv: Path | None = droplet.venv
        source = droplet.source
    elif (droplet / "source").is_dir():
        source = droplet / "source"
        venv = droplet / "venv" if (droplet / "venv").is_dir() else None
    elif droplet.is_dir():
        venv, source = None, droplet
    else:
        raise ImageError(f"the droplet {droplet} is not a folder")
    if not source.is_dir():
        raise ImageError(f"the droplet's source {source} is not a folder")
    lock, version = "", None
    if venv is not None:
        # Never build an image without the packages the app was staged with.
        if not (venv / _LOCK_NAME).is_file():
            raise ImageError(
                f"the droplet's environment {venv} is missing or has no {_LOCK_NAME}",
                hint="Restage the app (conveyor restage APP) and build its image again.",
            )
        lock = (venv / _LOCK_NAME).read_text()
        version = _venv_version(venv)
    if isinstance(droplet, Droplet):
        digest = droplet.lock_digest
    else:
        digest = hashlib.sha256(f"python {version or ''}\n{lock}".encode()).hexdigest()[:20]
    return DropletParts(source=source, lock=lock, lock_digest=digest, python_version=version)


def revision_droplet(droplet: Mapping[str, Any] | None) -> Path | Droplet:
    """The droplet a revision records (``{"venv", "source", "lock_digest"}``) to build from.

    ImageError when the revision has no files of its own (a ``run:`` model, a stream app).
    """
    droplet = droplet or {}
    if droplet.get("venv") and droplet.get("source"):
        return Droplet(
            venv=Path(droplet["venv"]),
            lock_digest=str(droplet.get("lock_digest", "")),
            cached=True,
            source=Path(droplet["source"]),
        )
    if droplet.get("source"):
        return Path(droplet["source"])
    raise ImageError(
        "this revision has no droplet of its own to build an image from",
        hint="Images are built from apps pushed with their files (command or model apps).",
    )


def app_layers(
    parts: DropletParts,
    base: BaseImage,
    python_version: str,
    scratch: Path,
    cache: Path | None = None,
) -> AppLayers:
    """Write both layers under ``scratch``; the dependencies layer is kept in ``cache`` (if
    given) by everything that decides its bytes, so a later image of the same lock reuses it."""
    key = json.dumps([_FORMAT, parts.lock, base.platform, base.python, python_version, VENV_DIR])

    def build() -> Layer:
        venv = _environment(parts, base, python_version, scratch / "venv")
        return write_layer([Entry(venv, PurePosixPath(VENV_DIR.lstrip("/")))], scratch / "layers")

    dependencies = cached_layer(cache, hashlib.sha256(key.encode()).hexdigest()[:32], build)
    app = PurePosixPath(APP_DIR.lstrip("/"))
    source = write_layer([Entry(parts.source, app)], scratch / "layers")
    return AppLayers(dependencies=dependencies, source=source)


def _environment(parts: DropletParts, base: BaseImage, python_version: str, venv: Path) -> Path:
    """The image's environment in ``venv``: the lock installed for ``base``'s platform."""
    minor = ".".join(python_version.split(".")[:2])
    site = venv_frame(venv, base, python_version)
    bin_dir = venv / "bin"
    pins = [line for line in parts.lock.splitlines() if line[:1].isalnum()]
    if pins:
        lock = venv.parent / _LOCK_NAME
        lock.write_text(parts.lock)
        run_uv(
            [
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                "--python-platform",
                _uv_platform(base.platform),
                "--python-version",
                minor,
                "--requirements",
                str(lock),
            ],
            f"install the app's {len(pins)} packages for {base.platform}",
            error=ImageError,
            hint="Check that the packages have wheels (or sources) for that platform.",
            timeout=900.0,
            compile_bytecode=False,
        )
        _move_scripts(site / "bin", bin_dir)
    return venv


def venv_frame(venv: Path, base: BaseImage, python_version: str) -> Path:
    """An environment's frame in ``venv`` (its empty ``site-packages``, returned; ``bin/python``
    links to the base's interpreter; ``pyvenv.cfg``), as it will be at :data:`VENV_DIR`."""
    minor = ".".join(python_version.split(".")[:2])
    site = venv / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    bin_dir = venv / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3", f"python{minor}"):
        (bin_dir / name).symlink_to(base.python)
    (venv / "pyvenv.cfg").write_text(
        f"home = {PurePosixPath(base.python).parent}\n"
        "include-system-site-packages = false\n"
        f"version = {python_version}\n"
    )
    return site


def app_config(
    base_config: Mapping[str, Any],
    layers: AppLayers,
    *,
    parts: DropletParts,
    base: BaseImage,
    labels: Mapping[str, str],
    command: str | Sequence[str] | None,
) -> bytes:
    """An app image's config: the base's, with the app's two layers, labels and ``Cmd``."""
    added = [
        (f"conveyor: dependencies (lock {parts.lock_digest})", layers.dependencies),
        ("conveyor: source", layers.source),
    ]
    labels = {**labels, LABEL_LOCK: parts.lock_digest, LABEL_SOURCE: layers.source.diff_id}
    return image_config(
        base_config, added, base=base, labels=labels, command=command, workdir=APP_DIR
    )


def image_config(
    base_config: Mapping[str, Any],
    added: Sequence[tuple[str, Layer]],
    *,
    base: BaseImage,
    labels: Mapping[str, str],
    command: str | Sequence[str] | None = None,
    workdir: str | None = None,
) -> bytes:
    """The image config's exact bytes: the base's, with ``added`` layers (each with the history
    line that made it), the environment on PATH, ``labels``, and ``command``/``workdir`` if
    given."""
    inherited = dict(base_config.get("config") or {})
    env = [str(e) for e in inherited.get("Env") or []]
    path = next((e[5:] for e in env if e.startswith("PATH=")), _DEFAULT_PATH)
    env = [e for e in env if not e.startswith(("PATH=", "VIRTUAL_ENV="))]
    env += [f"PATH={VENV_DIR}/bin:{path}", f"VIRTUAL_ENV={VENV_DIR}", "PYTHONUNBUFFERED=1"]
    all_labels = {
        **(inherited.get("Labels") or {}),
        **labels,
        "org.opencontainers.image.base.name": base.reference,
    }
    config: dict[str, Any] = {**inherited, "Env": env, "Labels": all_labels}
    if workdir is not None:
        config["WorkingDir"] = workdir
    if command is not None:
        config.pop("Entrypoint", None)
        config["Cmd"] = (
            ["/bin/sh", "-c", f"exec {command}"] if isinstance(command, str) else list(command)
        )
    rootfs = dict(base_config.get("rootfs") or {})
    diff_ids = [*(rootfs.get("diff_ids") or []), *(layer.diff_id for _, layer in added)]
    os_name, _, arch = base.platform.partition("/")
    history = [
        *(base_config.get("history") or []),
        *({"created": _CREATED, "created_by": made_by} for made_by, _ in added),
    ]
    document = {
        "architecture": arch.split("/")[0],
        "os": os_name,
        "created": _CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if base_config.get("variant"):
        document["variant"] = base_config["variant"]
    return _canonical(document)


def image_manifest(
    base_layers: Sequence[Mapping[str, Any]], layers: Sequence[Layer], config: bytes
) -> bytes:
    """The OCI manifest's exact bytes: the base's layers, then ``layers``."""
    descriptors = [
        {
            "mediaType": _LAYER_TYPES.get(str(d["mediaType"]), str(d["mediaType"])),
            "digest": str(d["digest"]),
            "size": int(d["size"]),
        }
        for d in base_layers
    ]
    descriptors += [
        {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
        for layer in layers
    ]
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": descriptors,
        }
    )


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _uv_platform(platform: str) -> str:
    try:
        return _UV_PLATFORMS[platform]
    except KeyError:
        known = ", ".join(sorted(_UV_PLATFORMS))
        raise ImageError(
            f"cannot install packages for the image platform {platform!r}; use one of {known}"
        ) from None


def _move_scripts(scripts: Path, bin_dir: Path) -> None:
    """Move installed console scripts into the environment, run by its own interpreter."""
    if not scripts.is_dir():
        return
    for script in sorted(scripts.iterdir()):
        target = bin_dir / script.name
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            data = f"#!{VENV_DIR}/bin/python".encode() + data[data.index(b"\n") :]
        target.write_bytes(data)
        target.chmod(0o755)
        script.unlink()
    scripts.rmdir()


def _venv_version(venv: Path) -> str | None:
    try:
        text = (venv / "pyvenv.cfg").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version"):
            return value.strip()
    return None
