"""Find what a recorded run produced: ``run:<run-id>/<model-name>`` URIs.

found = model_from_run("run:3f2a9c/model", settings)
found.path       # a verified local copy, named with the model format's suffix
found.run_id     # the full id of the run that trained it (lineage)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.config import Settings
from conveyor.errors import UsageError
from conveyor.store.artifacts import ArtifactStore, digest_file
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry

__all__ = ["RunModel", "export_digest", "export_run_model", "model_from_run", "parse_run_uri"]

PREFIX = "run:"


@dataclass(frozen=True)
class RunModel:
    path: Path
    #: The run that trained it; None for a registered version uploaded as a file.
    run_id: str | None
    name: str
    format: str
    digest: str
    signature: dict[str, Any] | None
    #: Types its skops file needs that the run recorded when it wrote the file; trusted
    #: when it is loaded from this verified copy (trust by provenance).
    trusted_types: tuple[str, ...] = ()
    #: The registered version it was found as (``models:/`` URIs), for lineage.
    version: int | None = None


def parse_run_uri(uri: str) -> tuple[str, str]:
    """``"run:<id>/<name>"`` -> (id, name); a malformed URI is a UsageError saying the form."""
    body = uri.removeprefix(PREFIX)
    run_id, sep, name = body.partition("/")
    if not uri.startswith(PREFIX) or not sep or not run_id or not name or "/" in name:
        raise UsageError(
            f"{uri!r} is not a run model URI; the form is run:<run-id>/<model-name>, "
            "for example run:3f2a9c/model"
        )
    return run_id, name


def model_from_run(uri: str, settings: Settings) -> RunModel:
    """The model a run saved, exported (verified) to a local cache file."""
    with Registry.from_settings(settings) as registry:
        return export_run_model(
            uri, registry, ArtifactStore.from_settings(settings), settings.home / "models"
        )


def export_run_model(uri: str, registry: Registry, store: BlobStore, folder: Path) -> RunModel:
    """The model a run saved, exported (verified) into ``folder``, named by its digest.

    The platform exports a ``run:`` model of an app so, then hands the instance
    that file alone: an isolated instance cannot read the registry itself.
    """
    run_id, name = parse_run_uri(uri)
    record = registry.get_model(run_id, name)
    return RunModel(
        path=export_digest(record.digest, record.path, store, folder),
        run_id=record.run_id,
        name=record.name,
        format=record.format,
        digest=record.digest,
        signature=record.signature,
        trusted_types=record.trusted_types,
    )


def export_digest(digest: str, name: str, store: BlobStore, folder: Path) -> Path:
    """A verified copy of the artifact ``digest`` in ``folder``, with ``name``'s suffix.

    A cache file whose content no longer matches is replaced; a stored blob that
    no longer matches its digest is an IntegrityError (never served).
    """
    suffix = PurePosixPath(name).suffix or ".bin"
    target = folder / f"{digest.partition(':')[2]}{suffix}"
    if not target.exists() or digest_file(target) != digest:
        store.export(digest, target)
    return target
