"""What the commands that send an app share: its manifest, its files and the push body.

``push`` (to this machine or a Kubernetes target), ``k8s render`` and the task and
stream app registrations read a manifest's apps and upload files by digest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.client import PlatformClient, say
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.platform.spec import AppSpec

__all__ = [
    "file_entries",
    "hashed_files",
    "manifest_apps",
    "manifest_option",
    "push_body",
    "upload",
    "upload_folder",
]


#: ``-f/--manifest``, for every command that reads a manifest's apps (:func:`manifest_apps`).
manifest_option = click.option(
    "-f",
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The manifest to read  [default: conveyor.yml, else manifest.yml]",
)


def manifest_apps(names: tuple[str, ...], manifest_path: Path | None) -> list[AppSpec]:
    """The apps ``names`` of the manifest (all when none are named); unknown names refused."""
    from conveyor.platform.manifest import find_manifest, load_manifest

    manifest_path = manifest_path or find_manifest(Path.cwd())
    manifest = load_manifest(manifest_path)
    if manifest.ignored:
        say(f"ignored: {', '.join(manifest.ignored)}")
    apps = list(manifest.applications)
    if names:
        known = {a.name for a in apps} | set(manifest.entries.values())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(
                f"{manifest_path} has no app {', '.join(map(repr, unknown))} "
                f"(its apps: {', '.join(sorted(known))})"
            )
        apps = manifest.selected(names)
    return apps


def upload(client: PlatformClient, local: dict[str, tuple[Path, str, int]], name: str) -> None:
    """Send the files the platform does not have yet (by digest)."""
    digests = sorted({d for _, d, _ in local.values()})
    missing = set(client.call("POST", "/v1/blobs/missing", {"digests": digests})["missing"])
    sent = 0
    for path, digest, _ in local.values():
        if digest in missing:
            client.upload(digest, path)
            missing.discard(digest)
            sent += 1
    say(f"{name}: {len(local)} file(s), {sent} uploaded, {len(local) - sent} unchanged")


def upload_folder(
    client: PlatformClient, folder: Path, name: str
) -> dict[str, tuple[Path, str, int]]:
    """Upload a folder's source files (as staging would copy them); relative name -> file."""
    from conveyor.platform.staging import source_files

    local = hashed_files([(folder / rel, rel.as_posix()) for rel in source_files(folder)])
    upload(client, local, name)
    return local


def file_entries(local: dict[str, tuple[Path, str, int]]) -> dict[str, dict[str, Any]]:
    """The files as a request names them: relative name -> digest and mode."""
    return {rel: {"digest": d, "mode": mode} for rel, (_, d, mode) in local.items()}


def hashed_files(files: list[tuple[Path, str]]) -> dict[str, tuple[Path, str, int]]:
    """Relative name -> (path, digest, mode) of each regular file."""
    from conveyor.store.digests import hash_path

    local: dict[str, tuple[Path, str, int]] = {}
    for path, rel in sorted(files, key=lambda item: item[1]):
        if path.is_symlink() or not path.is_file():
            continue
        local[rel] = (path, hash_path(path), path.stat().st_mode & 0o777)
    return local


def push_body(app: AppSpec) -> tuple[dict[str, Any], dict[str, tuple[Path, str, int]]]:
    """The push request's spec (a local model becomes its uploaded name) and the files to send."""
    from conveyor.platform.staging import source_files

    spec = dataclasses.replace(app, path=None)
    stored = ("run:", "models:/")
    if app.kind == "model" and app.model is not None and not app.model.startswith(stored):
        target = Path(app.model)
        if target.is_dir():
            files = [
                (target / rel, f"{target.name}/{rel.as_posix()}") for rel in source_files(target)
            ]
        else:
            files = [(target, target.name)]
        spec = dataclasses.replace(spec, model=target.name)
    elif app.kind == "command" and app.path is not None:
        files = [(app.path / rel, rel.as_posix()) for rel in source_files(app.path)]
    else:
        files = []
    return spec.to_json(), hashed_files(files)
