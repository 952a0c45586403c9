"""The runtime image: a base image with the Conveyor this server runs, for apps that run Conveyor.

Model apps (``conveyor serve``), stream apps (the stream runtime) and built-in or
``python:`` task steps run Conveyor itself in their pods. Their image is the
target's base image (or the official slim Python of this server's Python) plus
one layer: ``/opt/conveyor/venv`` holding Conveyor and the closure of its
requirements for :data:`RUNTIME_EXTRAS`, copied file by file from this server's
own environment (each distribution's ``RECORD``) at the exact versions
installed, with console scripts written for the image (``#!/opt/conveyor/venv/bin/python``)::

    image = build_runtime("127.0.0.1:5000/ds", insecure=True)
    image.pinned            # '127.0.0.1:5000/ds/conveyor-runtime@sha256:…'


Copying works only where the image's interpreter can load this environment's
compiled extensions: the same OS and architecture and the same Python
major.minor. Anything else is refused before a layer is built, naming both.
The layer is reproducible (the same environment gives the same digest), kept in
the layer cache by the environment's digest, and not pushed again when the
registry has it.
"""

from __future__ import annotations

import hashlib
import json
import platform as host
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor._version import __version__
from conveyor.errors import UsageError
from conveyor.platform.errors import ImageError
from conveyor.platform.images.build import VENV_DIR, droplet_parts, image_config, venv_frame
from conveyor.platform.images.clash import LABEL_PACKAGES, check_lock, packages_label
from conveyor.platform.images.layers import Entry, Layer, cached_layer, write_layer
from conveyor.platform.images.push import Pushing, open_registries, push_target, read_base
from conveyor.platform.images.reference import BaseImage, ImageRef
from conveyor.platform.staging import Droplet

__all__ = [
    "LABEL_ENVIRONMENT",
    "LABEL_VERSION",
    "RUNTIME_EXTRAS",
    "RUNTIME_REPOSITORY",
    "RuntimeEnvironment",
    "build_runtime",
    "check_app",
    "check_extras",
    "read_environment",
    "runtime_layer",
    "server_platform",
]

#: Where the runtime image goes, under a target's registry.
RUNTIME_REPOSITORY = "conveyor-runtime"
#: What a pod running Conveyor needs besides the core: scikit-learn and skops (the default
#: model format), boto3 (models and artifacts from the S3 artifact root) and the brokers'
#: clients a stream's binder speaks. Left out: other model formats (onnx, xgboost, lightgbm:
#: 80-130 MB each), the engines (spark, ray), and what only the control plane uses
#: (postgres, kubernetes).
RUNTIME_EXTRAS = ("sklearn", "s3", "kafka", "nats", "redis", "rabbitmq")
LABEL_VERSION = "conveyor.version"
LABEL_ENVIRONMENT = "conveyor.environment-digest"
Progress = Callable[[str], None]
#: Bumped whenever what goes into the layer changes (cached layers are keyed by it).
_FORMAT = 1
_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
#: Test suites shipped inside packages: no runtime imports them (33 MB of the default
#: closure, 16 MB of it scipy's).
_TEST_DIRS = frozenset({"tests", "test"})
#: What an editable install leaves in site-packages instead of its code.
_EDITABLE_ONLY = ("direct_url.json", "RECORD")


@dataclass(frozen=True)
class Installed:
    """One distribution of the closure: its files (path in site-packages → file here)."""

    name: str
    version: str
    files: dict[str, Path]
    #: Console scripts: name → ``module:attribute``.
    scripts: dict[str, str]
    #: What decides its bytes: its RECORD's digest, or (editable) its files' contents.
    digest: str


@dataclass(frozen=True)
class RuntimeEnvironment:
    """The part of this server's environment a runtime image carries."""

    python: str
    platform: str
    extras: tuple[str, ...]
    installed: tuple[Installed, ...]
    #: Requirements of the extras that are not installed here (left out, said so).
    missing: tuple[str, ...] = field(default=())

    @property
    def minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    @property
    def digest(self) -> str:
        """sha256 of what decides the layer: Python, platform and every distribution."""
        listing = [
            self.minor,
            self.platform,
            [[i.name, i.version, i.digest] for i in self.installed],
        ]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]

    @property
    def packages(self) -> dict[str, str]:
        """Every distribution's version by its name."""
        return {i.name: i.version for i in self.installed}

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for i in self.installed for path in i.files.values())


def server_platform() -> str:
    """``linux/amd64`` or ``linux/arm64``: what this server's packages were built for."""
    machine = host.machine().lower()
    arch = _ARCHITECTURES.get(machine, machine)
    return f"{sys.platform}/{arch}"


def read_environment(extras: Iterable[str] = RUNTIME_EXTRAS) -> RuntimeEnvironment:
    """Conveyor and the closure of its requirements for ``extras``, as installed here."""
    from packaging.requirements import Requirement  # distributed's requirement: always here
    from packaging.utils import canonicalize_name

    wanted = tuple(sorted(set(extras)))
    check_extras(wanted)
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():  # the first of a name on sys.path is the one imported
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    chosen: dict[str, set[str]] = {}
    missing: list[str] = []
    queue: list[tuple[str, frozenset[str]]] = [("conveyor", frozenset(wanted))]
    while queue:
        key, asked = queue.pop()
        dist = found[key]
        now = chosen.get(key, {""}) | asked
        if chosen.get(key) == now:
            continue
        chosen[key] = now
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": e}) for e in sorted(now)):
                continue
            needed = canonicalize_name(requirement.name)
            if needed in found:
                queue.append((needed, frozenset(requirement.extras)))
            elif marker is None or marker.evaluate({"extra": ""}):
                raise ImageError(
                    f"{dist.metadata['Name']} requires {requirement.name}, which is not "
                    "installed in this environment: it cannot be copied into an image"
                )
            else:  # an extra's package this server was installed without
                missing.append(requirement.name)
    installed = tuple(_installed(found[key]) for key in sorted(chosen))
    return RuntimeEnvironment(
        python=".".join(map(str, sys.version_info[:3])),
        platform=server_platform(),
        extras=wanted,
        installed=installed,
        missing=tuple(sorted(set(missing))),
    )


def check_extras(extras: Iterable[str]) -> None:
    """UsageError naming an extra Conveyor does not have, and the ones it has."""
    try:
        known = sorted(metadata.metadata("conveyor").get_all("Provides-Extra") or [])
    except metadata.PackageNotFoundError:
        raise ImageError(
            "Conveyor is not installed as a distribution in this environment"
        ) from None
    unknown = [e for e in extras if e not in known]
    if unknown:
        raise UsageError(f"Conveyor has no extra {unknown[0]!r}; its extras are {', '.join(known)}")


def _installed(dist: metadata.Distribution) -> Installed:
    name, version = dist.metadata["Name"], dist.version
    if dist.files is None:
        raise ImageError(
            f"{name} {version} has no RECORD in this environment, so its files are unknown",
            hint="Reinstall it with pip or uv (a system package manager may omit RECORD).",
        )
    site = Path(str(dist.locate_file(""))).resolve()
    editable = _editable_roots(dist, site)
    files: dict[str, Path] = {}
    for member in dist.files:
        rel = PurePosixPath(member.as_posix())
        if rel.parts[0] == ".." or not _kept(rel):
            continue  # outside site-packages (scripts are written anew; binaries like uv's)
        if editable is not None and (
            rel.suffix == ".pth"
            or rel.name.startswith("__editable__")
            or rel.name in _EDITABLE_ONLY
        ):
            continue
        path = Path(str(dist.locate_file(member)))
        if path.is_file():
            files[rel.as_posix()] = path
    if editable is not None:
        files.update(editable)
        digest = hashlib.sha256()
        for rel_name in sorted(files):
            digest.update(rel_name.encode() + b"\0" + files[rel_name].read_bytes() + b"\0")
        fingerprint = digest.hexdigest()
    else:
        record = next((m for m in dist.files if m.name == "RECORD"), None)
        text = dist.read_text("RECORD") if record is not None else "\n".join(sorted(files))
        fingerprint = hashlib.sha256((text or "").encode()).hexdigest()
    scripts = {
        ep.name: ep.value.split("[")[0].strip()
        for ep in dist.entry_points
        if ep.group == "console_scripts"
    }
    return Installed(name, version, files, scripts, fingerprint)


def _editable_roots(dist: metadata.Distribution, site: Path) -> dict[str, Path] | None:
    """An editable install's code (the packages under the folders its ``.pth`` names); None for
    a regular install."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    if not (direct.get("dir_info") or {}).get("editable"):
        return None
    roots = []
    for member in dist.files or []:
        if member.suffix == ".pth":
            for line in (site / member.as_posix()).read_text().splitlines():
                if line.strip() and not line.startswith(("#", "import ")):
                    roots.append(Path(line.strip()))
    if not roots:
        raise ImageError(
            f"{dist.metadata['Name']} is installed in editable mode through an import hook, "
            "whose files cannot be found to copy",
            hint="Install it without -e (or with uv, whose editable installs are .pth paths).",
        )
    files: dict[str, Path] = {}
    for root in roots:
        for top in sorted(root.iterdir()):
            if top.name.endswith((".dist-info", ".egg-info")) or top.name.startswith("."):
                continue
            if top.is_file() and top.suffix == ".py":
                files[top.name] = top
            elif top.is_dir() and (top / "__init__.py").is_file():
                for path in sorted(top.rglob("*")):
                    rel = PurePosixPath(path.relative_to(root).as_posix())
                    if path.is_file() and _kept(rel, package=True):
                        files[rel.as_posix()] = path
    return files


def _kept(rel: PurePosixPath, *, package: bool = False) -> bool:
    """Whether a file of site-packages goes into the image: no bytecode, no test suites."""
    folders = rel.parts[:-1]
    if "__pycache__" in folders or rel.suffix == ".pyc":
        return False
    return package or not _TEST_DIRS.intersection(folders[1:])


def runtime_layer(
    env: RuntimeEnvironment,
    base: BaseImage,
    base_python: str,
    scratch: Path,
    cache: Path | None = None,
) -> Layer:
    """The layer of ``/opt/conveyor/venv``: ``env``'s files and scripts on ``base``'s Python."""
    key = json.dumps([_FORMAT, env.digest, base.python, base_python, VENV_DIR])

    def build() -> Layer:
        venv = scratch / "venv"
        site = venv_frame(venv, base, base_python)
        for installed in env.installed:
            for script, target in installed.scripts.items():
                if not (venv / "bin" / script).exists():
                    _write_script(venv / "bin" / script, target)
        prefix = PurePosixPath(VENV_DIR.lstrip("/")) / site.relative_to(venv).as_posix()
        entries = [Entry(venv, PurePosixPath(VENV_DIR.lstrip("/")))]
        entries += [
            Entry(path, prefix / rel)
            for installed in env.installed
            for rel, path in installed.files.items()
        ]
        return write_layer(entries, scratch / "layers")

    return cached_layer(cache, "runtime-" + hashlib.sha256(key.encode()).hexdigest()[:32], build)


def _write_script(path: Path, target: str) -> None:
    """A console script calling ``module:attribute`` with the image's environment."""
    module, _, attribute = target.partition(":")
    if attribute:
        body = f"from {module} import {attribute.split('.')[0]}\n\nsys.exit({attribute}())\n"
    else:
        body = f"import runpy\n\nrunpy.run_module({module!r}, run_name='__main__')\n"
    path.write_text(f"#!{VENV_DIR}/bin/python\nimport sys\n{body}")
    path.chmod(0o755)


def build_runtime(
    registry: str,
    *,
    base: str | BaseImage | None = None,
    extras: Iterable[str] = RUNTIME_EXTRAS,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    progress: Progress | None = None,
    cache: Path | None = None,
) -> ImageRef:
    """Build the runtime image on ``base`` and push it to ``<registry>/conveyor-runtime``.

    ``base`` defaults to the official slim Python image of this server's Python; it is
    also tagged ``<conveyor version>-<environment digest, 12 hex>``. Returns the image
    pinned by digest; ImageError when this environment cannot run on the base.
    """
    say = progress or (lambda _m: None)
    target = push_target(f"{registry.rstrip('/')}/{RUNTIME_REPOSITORY}")
    env = read_environment(extras)
    platform = env.platform
    if not platform.startswith("linux/"):
        raise ImageError(
            f"this server runs on {platform}, and its packages cannot run in a Linux image",
            hint="Build the runtime image on a Linux machine of the cluster's architecture, "
            "or give the target a --runtime-image.",
        )
    if base is None:
        base = BaseImage.for_python(env.python, platform=platform)
    elif isinstance(base, str):
        base = BaseImage(base, platform=platform)
    for name in env.missing:
        say(f"{name} is not installed here: the runtime image goes without it")
    with ExitStack() as stack:
        registry_api, source, base_ref = open_registries(stack, target, base, insecure, auth)
        say(f"Reading the base image {base_ref}...")
        base_manifest, base_config = read_base(source, base_ref, base.platform)
        base_python = _base_python(base_config, env, str(base_ref))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-runtime-")))
        say(
            f"Building the runtime layer: Conveyor {__version__} and {len(env.installed) - 1} "
            f"packages ({env.size / 1e6:.0f} MB) for {platform}, Python {env.python}..."
        )
        layer = runtime_layer(env, base, base_python, scratch, cache)
        labels = {
            LABEL_VERSION: __version__,
            LABEL_ENVIRONMENT: env.digest,
            LABEL_PACKAGES: packages_label(env.packages),
            "org.opencontainers.image.version": __version__,
        }
        made_by = f"conveyor: runtime {__version__} (environment {env.digest})"
        config = image_config(base_config, [(made_by, layer)], base=base, labels=labels)
        tag = f"{__version__}-{env.digest[:12]}".replace("+", "_")
        pushing = Pushing(registry_api, source, target, base_ref, scratch, say)
        return pushing.push(base_manifest, [("runtime layer", layer)], config, tag)


def check_app(droplet: Path | Droplet, extras: Iterable[str] = RUNTIME_EXTRAS) -> None:
    """ImageError when the app's lock pins a package at another version than the runtime image
    of this server's environment (for ``extras``) has: checked before that image is built."""
    lock = droplet_parts(droplet).lock
    if lock.strip():  # a model app's files alone install nothing: no environment to read
        image = f"the runtime image of this server's Conveyor {__version__}"
        check_lock(lock, read_environment(extras).packages, image)


def _base_python(config: Mapping[str, Any], env: RuntimeEnvironment, base: str) -> str:
    """The base's Python version; ImageError unless its major.minor is this server's."""
    variables = (config.get("config") or {}).get("Env") or []
    declared = next((v.split("=", 1)[1] for v in variables if v.startswith("PYTHON_VERSION=")), "")
    if not declared:
        raise ImageError(
            f"the base image {base} does not say its Python version (no PYTHON_VERSION), so "
            f"it cannot be told to be this server's Python {env.python}",
            hint="Use a base image that sets PYTHON_VERSION, as the official python images do.",
        )
    if declared.split(".")[:2] != env.python.split(".")[:2]:
        raise ImageError(
            f"the base image {base} has Python {declared} but this server runs Python "
            f"{env.python}: its packages (compiled for Python {env.minor}) cannot be copied "
            "into it",
            hint=f"Use a base image with Python {env.minor} (python:{env.minor}-slim).",
        )
    return declared
