"""From what the user typed after ``conveyor serve`` to a loaded model with its lineage.

``resolve_model_uri`` accepts a model file (by suffix), an MLflow model
directory (with an ``MLmodel`` file), ``run:<run-id>/<model-name>``, a model
saved by a recorded run, or ``models:/<name>/<version>`` /
``models:/<name>@<alias>``, a registered version (both looked up in the
registry, read verified from the artifact store, and served with the run's id
as their lineage), or ``artifact:<digest>/<file name>``, one blob of the
artifact store (what a pod on a Kubernetes target serves: it reads the bucket
``CONVEYOR_ARTIFACT_ROOT`` names, never a registry).

Trust by provenance: a skops file ``conveyor.save_model`` wrote records the
exact types it needs; loaded through the registry (digest verified) those
types are trusted without ``CONVEYOR_TRUSTED_TYPES``. The platform hands an
isolated instance the verified file with ``expect_digest`` and
``trusted_types``: the types are trusted only while the file still has that
digest.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path

from conveyor.config import Settings
from conveyor.errors import ModelError, UsageError
from conveyor.models import Model, format_for

__all__ = ["ResolvedModel", "model_digest", "resolve_model_uri"]


@dataclass(frozen=True)
class ResolvedModel:
    """A loaded model and where it came from (for lineage headers and metadata)."""

    model: Model
    name: str
    source: str
    digest: str
    version: str = "1"
    run_id: str | None = None
    #: ``name/N`` of the registry's version this is (sent as x-model-version); None otherwise.
    registered: str | None = None


def model_digest(path: Path) -> str:
    """``blake3:<hex>`` of a model file, or of a directory's relative names and contents."""
    from blake3 import blake3

    hasher = blake3()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = item.relative_to(path).as_posix().encode("utf-8")
            hasher.update(len(rel).to_bytes(8, "little") + rel)
            hasher.update(blake3(item.read_bytes()).digest())
    else:
        hasher.update(path.read_bytes())
    return "blake3:" + hasher.hexdigest()


def _load_file(path: Path, trusted: bool, settings: Settings) -> Model:
    fmt = format_for(path)
    if "settings" in inspect.signature(fmt.load).parameters:
        loaded: Model = fmt.load(path, trusted=trusted, settings=settings)  # type: ignore[call-arg]
        return loaded
    return fmt.load(path, trusted=trusted)


def resolve_model_uri(
    uri: str,
    settings: Settings,
    *,
    trusted: bool = False,
    name: str | None = None,
    run_id: str | None = None,
    expect_digest: str | None = None,
    trusted_types: tuple[str, ...] = (),
    version: str | None = None,
) -> ResolvedModel:
    """Load the model ``uri`` names; ModelError says what is wrong and what to do.

    ``run_id`` names the run that trained a model given as a file (the platform
    hands an isolated instance a run's model so, since it cannot read the registry).

    * ``model.skops``, ``model.onnx``, ``model.pmml``, ``model.joblib`` (needs ``trusted``)
    * ``path/to/mlflow-model/`` — a directory holding an ``MLmodel`` file
    * ``run:<run-id>/<artifact>`` — a model saved by a recorded run (needs the registry)
    * ``models:/<name>/<version>``, ``models:/<name>@<alias>`` — a registered version
    * ``artifact:<digest>/<file name>`` — a blob of the artifact store, verified as it is
      read; ``trusted_types`` are trusted in it (its digest is the one they hold for)

    ``expect_digest`` refuses a file whose digest differs (it is never served);
    ``trusted_types`` are trusted in that file (given with ``expect_digest`` only).
    """
    if name is not None and _safe_name(name) != name:
        raise UsageError(
            f"--name {name!r} cannot appear in a URL path; use letters, digits, '-', '_' and '.'"
        )
    if uri.startswith(("run:", "models:/")):
        from conveyor.repro.registered import model_from_uri

        found = model_from_uri(uri, settings)
        return ResolvedModel(
            model=_load_file(found.path, trusted, _trusting(settings, found.trusted_types)),
            name=name or _safe_name(found.name),
            source=uri,
            digest=found.digest,
            version=str(found.version or 1),
            run_id=found.run_id,
            registered=f"{found.name}/{found.version}" if found.version else None,
        )
    if uri.startswith("artifact:"):
        from conveyor.repro.registered import model_from_artifact

        if expect_digest is not None and uri[len("artifact:") :].partition("/")[0] != expect_digest:
            raise UsageError(f"--expect-digest {expect_digest} is not the digest {uri} names")
        path, digest = model_from_artifact(uri, settings)
        resolved = resolve_model_uri(
            str(path),
            settings,
            trusted=trusted,
            name=name,
            run_id=run_id,
            expect_digest=digest,
            trusted_types=trusted_types,
            version=version,
        )
        return dataclasses.replace(resolved, source=uri)
    path = Path(uri).expanduser()
    if not path.exists():
        raise ModelError(f"{uri}: no such model file or directory")
    if trusted_types and expect_digest is None:
        raise UsageError("trusted types are given with the digest of the file they hold for")
    if expect_digest is not None:
        actual = model_digest(path)
        if actual != expect_digest:
            raise ModelError(
                f"{uri}: the file's digest {actual} no longer matches its version's "
                f"{expect_digest}; it is not served",
                hint="The file changed after the platform exported it; restage the app.",
            )
        settings = _trusting(settings, trusted_types)
    if path.is_dir():
        from conveyor.models import mlflow

        info = mlflow.read_mlmodel(path)
        model = mlflow.FORMAT.load(path, trusted=trusted, settings=settings)
        run_id = run_id or info.run_id
        default_name = path.resolve().name
    else:
        model = _load_file(path, trusted, settings)
        default_name = path.stem
    served_name = name or _safe_name(default_name)
    return ResolvedModel(
        model=model,
        name=served_name,
        source=str(path),
        digest=expect_digest or model_digest(path),
        version=version or "1",
        run_id=run_id,
        registered=f"{served_name}/{version}" if version else None,
    )


def _trusting(settings: Settings, types: tuple[str, ...]) -> Settings:
    """``settings`` that also trust ``types`` (a verified file's recorded provenance)."""
    if not types:
        return settings
    merged = tuple(dict.fromkeys((*settings.trusted_types, *types)))
    return dataclasses.replace(settings, trusted_types=merged)


def _safe_name(text: str) -> str:
    """A model name usable in a URL path segment."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-.")
    return cleaned or "model"
