"""The model registry's rules: ``models:/`` URIs, registering a run's model, moving aliases.

    models:/diagnosis/3          version 3
    models:/diagnosis@champion   the version the alias points at now
    models:/diagnosis            the latest version

>>> parse_models_uri("models:/diagnosis@champion")
ModelsURI(name='diagnosis', version=None, alias='champion')

``export_model`` turns a ``run:`` or ``models:/`` URI into a verified local
copy (:class:`conveyor.repro.lookup.RunModel`): what ``conveyor serve``, the
platform (for its isolated instances) and the stream ``score`` app load.
``model_blob`` only looks it up (digest, file name, trusted types), for a
Kubernetes target whose pods fetch the blob themselves as
``artifact:<digest>/<file name>`` (``model_from_artifact``), from the store
``CONVEYOR_ARTIFACT_ROOT`` names and with no registry.

>>> parse_artifact_uri("artifact:blake3:" + "ab" * 32 + "/model.skops")[1]
'model.skops'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.config import Settings
from conveyor.errors import UsageError
from conveyor.repro.lookup import RunModel, export_digest, export_run_model, parse_run_uri
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.blobs import BlobStore
from conveyor.store.digests import parse_digest
from conveyor.store.models import ModelRepository, ModelVersion, check_model_name
from conveyor.store.registry import Registry

__all__ = [
    "ARTIFACT",
    "PREFIX",
    "ModelBlob",
    "ModelsURI",
    "artifact_uri",
    "export_model",
    "is_model_reference",
    "model_blob",
    "model_from_artifact",
    "model_version_of",
    "move_alias",
    "parse_artifact_uri",
    "parse_models_uri",
    "register_run_model",
    "resolve_version",
    "signature_differences",
]

PREFIX = "models:/"
#: A blob of the artifact store by digest, with the name its format is known by.
ARTIFACT = "artifact:"
_FORM = "models:/<name>/<version>, models:/<name>@<alias> or models:/<name>"
_ARTIFACT_FORM = "artifact:blake3:<64 hex>/<file name>, e.g. artifact:blake3:9f2c.../model.skops"


@dataclass(frozen=True)
class ModelsURI:
    name: str
    version: int | None = None
    alias: str | None = None


def is_model_reference(uri: str) -> bool:
    """Whether ``uri`` names a model the registry keeps (``run:`` or ``models:/``)."""
    return uri.startswith(("run:", PREFIX))


def parse_models_uri(uri: str) -> ModelsURI:
    """``models:/name/3`` / ``models:/name@alias`` / ``models:/name``; UsageError says the form."""
    body = uri.removeprefix(PREFIX)
    if not uri.startswith(PREFIX) or not body:
        raise UsageError(f"{uri!r} is not a registered model URI; the form is {_FORM}")
    try:
        if "@" in body:
            name, _, alias = body.partition("@")
            return ModelsURI(check_model_name(name), alias=check_model_name(alias, "alias"))
        name, sep, version = body.partition("/")
        check_model_name(name)
        if not sep or version == "latest":
            return ModelsURI(name)
        if not version.isdigit() or int(version) < 1:
            raise UsageError(f"version {version!r} is not a version number (1, 2, ...)")
        return ModelsURI(name, version=int(version))
    except UsageError as exc:
        raise UsageError(f"{uri!r}: {exc.message}; the form is {_FORM}") from None


def resolve_version(uri: str, registry: Registry) -> ModelVersion:
    """The version a ``models:/`` URI names now; NotFoundError saying what exists."""
    parsed = parse_models_uri(uri)
    return ModelRepository(registry).resolve(
        parsed.name, version=parsed.version, alias=parsed.alias
    )


def model_version_of(uri: str, settings: Settings) -> tuple[str, int, str, str | None]:
    """(name, version, artifact digest, run id) of a ``models:/`` URI: for lineage."""
    with Registry.from_settings(settings) as registry:
        found = resolve_version(uri, registry)
    return found.model, found.version, found.digest, found.run_id


def export_model(uri: str, registry: Registry, store: BlobStore, folder: Path) -> RunModel:
    """A verified local copy of the model a ``run:`` or ``models:/`` URI names."""
    if not uri.startswith(PREFIX):
        return export_run_model(uri, registry, store, folder)
    found = resolve_version(uri, registry)
    return RunModel(
        path=export_digest(found.digest, found.filename, store, folder),
        run_id=found.run_id,
        name=found.model,
        format=found.format,
        digest=found.digest,
        signature=found.signature,
        trusted_types=found.trusted_types,
        version=found.version,
    )


@dataclass(frozen=True)
class ModelBlob:
    """The blob a ``run:`` or ``models:/`` URI names, looked up in the registry but not read."""

    digest: str
    #: The file's name as it was saved (its suffix says how to load it).
    filename: str
    name: str
    run_id: str | None
    #: The registered version (``models:/`` URIs); None for a run's model.
    version: int | None
    #: The types its run recorded for it (trusted while the blob has that digest).
    trusted_types: tuple[str, ...]

    @property
    def uri(self) -> str:
        """``artifact:<digest>/<file name>``: what a process with no registry serves."""
        return artifact_uri(self.digest, self.filename)


def model_blob(uri: str, registry: Registry) -> ModelBlob:
    """Digest, file name, lineage and trusted types of the model ``uri`` names now."""
    if uri.startswith(PREFIX):
        found = resolve_version(uri, registry)
        return ModelBlob(
            found.digest,
            found.filename,
            found.model,
            found.run_id,
            found.version,
            found.trusted_types,
        )
    run_id, name = parse_run_uri(uri)
    record = registry.get_model(run_id, name)
    return ModelBlob(
        record.digest, record.path, record.name, record.run_id, None, record.trusted_types
    )


def artifact_uri(digest: str, filename: str) -> str:
    return f"{ARTIFACT}{parse_digest(digest)}/{PurePosixPath(filename).name}"


def parse_artifact_uri(uri: str) -> tuple[str, str]:
    """``artifact:<digest>/<file name>`` -> (digest, file name); UsageError saying the form."""
    digest, sep, filename = uri.removeprefix(ARTIFACT).partition("/")
    if (
        not uri.startswith(ARTIFACT)
        or not sep
        or filename in ("", ".", "..")
        or "/" in filename
        or "\\" in filename
    ):
        raise UsageError(f"{uri!r} is not an artifact model URI; the form is {_ARTIFACT_FORM}")
    try:
        return parse_digest(digest), filename
    except UsageError:
        raise UsageError(
            f"{uri!r}: {digest!r} is not an artifact digest; the form is {_ARTIFACT_FORM}"
        ) from None


def model_from_artifact(uri: str, settings: Settings) -> tuple[Path, str]:
    """A verified copy of ``artifact:<digest>/<name>`` from the store CONVEYOR_ARTIFACT_ROOT
    names (an S3 bucket in a pod), in the user's model cache; and its digest.

    A blob that no longer matches its digest is an IntegrityError: it is never served.
    """
    digest, filename = parse_artifact_uri(uri)
    store = ArtifactStore.from_settings(settings)
    return export_digest(digest, filename, store, settings.home / "models"), digest


def model_from_uri(uri: str, settings: Settings) -> RunModel:
    """export_model into the user's model cache (``$CONVEYOR_HOME/models``)."""
    with Registry.from_settings(settings) as registry:
        return export_model(
            uri, registry, ArtifactStore.from_settings(settings), settings.home / "models"
        )


def register_run_model(
    registry: Registry, uri: str, name: str, *, description: str | None = None
) -> tuple[ModelVersion, bool]:
    """Register the model ``run:<id>/<model>`` names as a version of ``name``.

    The same artifact registered again returns the version it has (created False).
    """
    run_id, model_name = parse_run_uri(uri)
    record = registry.get_model(run_id, model_name)
    return ModelRepository(registry).add_version(
        name,
        digest=record.digest,
        format=record.format,
        signature=record.signature,
        run_id=record.run_id,
        source=f"run:{record.run_id}/{record.name}",
        filename=record.path,
        trusted_types=record.trusted_types,
        description=description,
    )


def move_alias(
    registry: Registry, name: str, alias: str, version: int, *, force: bool = False
) -> int | None:
    """Point ``alias`` at ``version``; returns the version it pointed at before (or None).

    Moving an alias to a version whose signature differs from the current one's
    is refused (the apps that follow it would get requests they cannot take)
    unless ``force``; the error names the fields that differ.
    """
    repo = ModelRepository(registry)
    target = repo.version(name, version)
    before = repo.model(name).aliases.get(alias)
    if before is not None and before != version and not force:
        current = repo.version(name, before)
        differences = signature_differences(current.signature, target.signature)
        if differences:
            raise UsageError(
                f"alias {alias!r} of {name!r} points at version {before}, whose signature "
                f"differs from version {version}'s: {'; '.join(differences)}",
                hint="Apps following the alias would receive requests they cannot take; "
                "pass --force to move it anyway.",
            )
    repo.set_alias(name, alias, version)
    return before


def signature_differences(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[str]:
    """What differs between two signatures (as JSON), one phrase per field; [] when equal."""
    if old is None or new is None:
        return [] if old == new else ["one version has no recorded signature"]
    found: list[str] = []
    for side in ("inputs", "outputs"):
        before = {f["name"]: f for f in old.get(side) or ()}
        after = {f["name"]: f for f in new.get(side) or ()}
        noun = side[:-1]
        for key in before.keys() - after.keys():
            found.append(f"{noun} {key!r} removed")
        for key in after.keys() - before.keys():
            found.append(f"{noun} {key!r} added")
        for key in before.keys() & after.keys():
            for attr in ("dtype", "shape", "optional", "values"):
                a, b = before[key].get(attr), after[key].get(attr)
                if _plain(a) != _plain(b):
                    found.append(f"{noun} {key!r} {attr} {_plain(a)} -> {_plain(b)}")
    for attr in ("classes", "task"):
        if _plain(old.get(attr)) != _plain(new.get(attr)):
            found.append(f"{attr} {_plain(old.get(attr))} -> {_plain(new.get(attr))}")
    return sorted(found)


def _plain(value: Any) -> Any:
    """Lists and tuples alike (JSON gives lists, dataclasses tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value
