"""Build an app's image from its droplet and push it: :func:`build_and_push`.

The base image is read from its registry (its manifest, picked from a
multi-platform index by the base's platform, and its config); the app's layers
are built (:mod:`.build`); then, against the target repository:

- the manifest's digest is asked for first: an image already there is not pushed again;
- base layers already present are skipped, else *mounted* from the base's
  repository when it lives on the same registry (no bytes move), else copied
  from the base's registry;
- the app's layers and the config are uploaded unless present (POST an
  upload, then PUT ?digest= streaming the file);
- the manifest is PUT with its exact bytes, by tag when one was given, else by digest.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from conveyor.platform.errors import ImageError
from conveyor.platform.images.build import (
    OCI_MANIFEST,
    DropletParts,
    app_config,
    app_layers,
    droplet_parts,
    image_manifest,
)
from conveyor.platform.images.clash import check_lock, labelled_packages
from conveyor.platform.images.distribution import DOCKER_LIST, OCI_INDEX, Registry
from conveyor.platform.images.layers import Layer
from conveyor.platform.images.reference import (
    BaseImage,
    ImageRef,
    Reference,
    is_loopback,
    parse_reference,
)
from conveyor.platform.staging import Droplet

__all__ = ["Pushing", "build_and_push", "open_registries", "push_target", "read_base"]

Progress = Callable[[str], None]


def build_and_push(
    droplet: Path | Droplet,
    *,
    repository: str,
    base: str | BaseImage | None = None,
    labels: Mapping[str, str],
    insecure: bool = False,
    progress: Progress | None = None,
    command: str | Sequence[str] | None = None,
    tag: str | None = None,
    auth: tuple[str, str] | None = None,
    cache: Path | None = None,
) -> ImageRef:
    """Build the image of ``droplet`` on ``base`` and push it to ``repository``.

    ``repository`` is ``host[:port]/path`` (``127.0.0.1:5000/ds/diagnosis``);
    ``base`` defaults to the official slim Python image of the droplet's Python;
    ``insecure`` speaks plain HTTP to the registries (one on your own machine);
    ``command`` becomes the image's ``Cmd`` (a string runs through ``/bin/sh -c``);
    ``auth`` is a user name and password (or token) for the registries; ``cache`` is a
    folder keeping dependency layers, so that the next image of the same lock skips
    installing and compressing them.
    Returns the pushed image pinned by its manifest's digest; raises
    :class:`ImageError` naming the registry when it refuses or cannot be reached.
    """
    say = progress or (lambda _m: None)
    target = push_target(repository)
    parts = droplet_parts(droplet)
    if base is None:
        base = BaseImage.for_python(parts.python_version or _host_python())
    elif isinstance(base, str):
        base = BaseImage(base)
    with ExitStack() as stack:
        registry, source, base_ref = open_registries(stack, target, base, insecure, auth)
        say(f"Reading the base image {base_ref}...")
        base_manifest, base_config = read_base(source, base_ref, base.platform)
        version = _python_version(base_config, parts, base_ref)
        runtime = labelled_packages(base_config)
        if runtime is not None:  # a runtime image: the app's packages go into its environment
            check_lock(parts.lock, runtime, f"the runtime image {base_ref}")
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-image-")))
        say(f"Building the app's layers for {base.platform} (Python {version})...")
        layers = app_layers(parts, base, version, scratch, cache)
        config = app_config(
            base_config, layers, parts=parts, base=base, labels=labels, command=command
        )
        blobs = [("dependencies layer", layers.dependencies), ("source layer", layers.source)]
        pushing = Pushing(registry, source, target, base_ref, scratch, say)
        return pushing.push(base_manifest, blobs, config, tag)


def push_target(repository: str) -> Reference:
    """The repository an image is pushed to; UsageError for a malformed one or one with a
    digest."""
    target = parse_reference(repository, what="image repository")
    if target.digest:
        raise ImageError(f"the image repository {repository!r} names a digest; give no digest")
    return target


def open_registries(
    stack: ExitStack,
    target: Reference,
    base: BaseImage,
    insecure: bool,
    auth: tuple[str, str] | None,
) -> tuple[Registry, Registry, Reference]:
    """The target's registry, the base's (the same one when they share a host), and the base's
    reference; both closed with ``stack``."""
    base_ref = parse_reference(base.reference, what="base image")
    registry = stack.enter_context(Registry(target.api_host, insecure=insecure, auth=auth))
    source = registry
    if base_ref.api_host != target.api_host:
        # Plain HTTP to the target does not make another registry (Docker Hub) plain HTTP.
        plain = insecure and is_loopback(base_ref.api_host)
        source = stack.enter_context(Registry(base_ref.api_host, insecure=plain, auth=auth))
    return registry, source, base_ref


class Pushing:
    """One image's push: the base's layers and ``blobs`` into ``target``, then its manifest."""

    def __init__(
        self,
        registry: Registry,
        source: Registry,
        target: Reference,
        base_ref: Reference,
        scratch: Path,
        say: Progress,
    ) -> None:
        self.registry, self.source = registry, source
        self.target, self.base_ref = target, base_ref
        self.scratch, self.say = scratch, say

    def push(
        self,
        base_manifest: Mapping[str, Any],
        blobs: Sequence[tuple[str, Layer]],
        config: bytes,
        tag: str | None,
    ) -> ImageRef:
        """Push unless the registry has the image (then only add a missing ``tag``)."""
        registry, target, say = self.registry, self.target, self.say
        layers = [layer for _, layer in blobs]
        manifest = image_manifest(base_manifest.get("layers") or [], layers, config)
        image = ImageRef(target.name, _sha256(manifest))
        if registry.manifest_digest(target.repository, image.digest):
            if tag is None or registry.manifest_digest(target.repository, tag) == image.digest:
                say(f"Image {image.pinned} is already in the registry: nothing to push")
                return image
            registry.put_manifest(target.repository, tag, manifest, OCI_MANIFEST)
            say(f"Image {image.pinned} is already in the registry: tagged it {tag}")
            return image
        _push_base_layers(
            registry, self.source, target, self.base_ref, base_manifest, self.scratch, say
        )
        config_path = self.scratch / "config.json"
        config_path.write_bytes(config)
        uploads = [(what, layer.digest, layer.path) for what, layer in blobs]
        _push_blobs(registry, target, [*uploads, ("config", _sha256(config), config_path)], say)
        registry.put_manifest(target.repository, tag or image.digest, manifest, OCI_MANIFEST)
        say(f"Pushed {image.pinned}")
        return image


def read_base(
    registry: Registry, ref: Reference, platform: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base's single-platform manifest and its config."""
    body, media_type = registry.get_manifest(ref.repository, ref.ref)
    manifest = _json(body, f"the manifest of {ref}")
    if media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
        digest = _pick_platform(manifest, platform, ref)
        body, _ = registry.get_manifest(ref.repository, digest)
        manifest = _json(body, f"the {platform} manifest of {ref}")
    config_digest = str((manifest.get("config") or {}).get("digest", ""))
    if not config_digest:
        raise ImageError(f"the base image {ref} has no config (not an image manifest)")
    config = _json(registry.get_blob(ref.repository, config_digest), f"the config of {ref}")
    built_for = f"{config.get('os', 'linux')}/{config.get('architecture', '?')}"
    if not platform.startswith(built_for):
        raise ImageError(
            f"the base image {ref} is for {built_for}, not {platform}",
            hint="Choose a base image (or a platform) that matches the cluster's nodes.",
        )
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(manifest.get("layers") or []):
        raise ImageError(
            f"the base image {ref} lists {len(manifest.get('layers') or [])} layers but its "
            f"config {len(diff_ids)} diff_ids; it cannot be built on"
        )
    return manifest, config


def _pick_platform(index: Mapping[str, Any], platform: str, ref: Reference) -> str:
    want = platform.split("/")
    offered = []
    for entry in index.get("manifests") or []:
        p = entry.get("platform") or {}
        have = [p.get("os", ""), p.get("architecture", "")] + (
            [p["variant"]] if "variant" in p else []
        )
        offered.append("/".join(have))
        if have[:2] == want[:2] and (len(want) < 3 or have[2:] == want[2:]):
            return str(entry["digest"])
    raise ImageError(
        f"the base image {ref} has no {platform} image (it has {', '.join(offered) or 'none'})",
        hint="Choose the base image's platform to match the cluster's nodes.",
    )


def _python_version(config: Mapping[str, Any], parts: DropletParts, ref: Reference) -> str:
    """The image's Python version; ImageError when the base's differs from the droplet's."""
    env = (config.get("config") or {}).get("Env") or []
    declared = next((e.split("=", 1)[1] for e in env if e.startswith("PYTHON_VERSION=")), None)
    staged = parts.python_version
    if declared and staged and declared.split(".")[:2] != staged.split(".")[:2]:
        raise ImageError(
            f"the base image {ref} has Python {declared} but the app was staged with "
            f"Python {staged}",
            hint=f"Use a base image with Python {'.'.join(staged.split('.')[:2])}.",
        )
    return staged or declared or _host_python()


def _push_base_layers(
    registry: Registry,
    source: Registry,
    target: Reference,
    base_ref: Reference,
    manifest: Mapping[str, Any],
    scratch: Path,
    say: Progress,
) -> None:
    same_registry = source is registry
    for descriptor in manifest.get("layers") or []:
        digest = str(descriptor["digest"])
        short = digest[7:19]
        if registry.has_blob(target.repository, digest):
            say(f"Base layer {short} is already in {target.repository}")
            continue
        if same_registry and registry.mount_blob(target.repository, digest, base_ref.repository):
            say(f"Base layer {short} mounted from {base_ref.repository}")
            continue
        path = scratch / f"base-{digest[7:]}"
        source.fetch_blob(base_ref.repository, digest, path)
        registry.upload_blob(target.repository, digest, path)
        path.unlink()
        say(f"Base layer {short} copied from {base_ref.name} ({_size(descriptor['size'])})")


def _push_blobs(
    registry: Registry, target: Reference, blobs: Sequence[tuple[str, str, Path]], say: Progress
) -> None:
    for what, digest, path in blobs:
        if registry.has_blob(target.repository, digest):
            say(f"The {what} {digest[7:19]} is already in the registry")
            continue
        registry.upload_blob(target.repository, digest, path)
        say(f"Uploaded the {what} {digest[7:19]} ({_size(path.stat().st_size)})")


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise ImageError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object")
    return value


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _size(size: object) -> str:
    count = float(str(size))
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _host_python() -> str:
    return ".".join(map(str, sys.version_info[:3]))
