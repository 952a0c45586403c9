"""Model apps: a model file or folder, a run's or a registered model, served by conveyor serve.

A ``run:`` or ``models:/`` model is looked up by the platform when it stages
the app and exported, verified, beside the platform's files; the instance gets
that file alone, with its digest (checked again when it loads) and the types
its run recorded when ``conveyor.save_model`` wrote it (trusted in that file
only: trust by provenance).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kinds.base import Files, Launch, Staging
from conveyor.platform.spec import AppSpec, HealthCheckSpec

__all__ = ["ModelKind", "serves_model"]

#: The serving runtime of the platform's own interpreter; "$1" is the model, then its options.
_SERVE = 'm="$1"; shift; exec "$0" -m conveyor serve "$m" --host 127.0.0.1 --port "$PORT" "$@"'
_CHECK = HealthCheckSpec(type="http", endpoint="/v2/health/ready")


class ModelKind:
    """``model: run:<id>/<model>``, ``models:/name@alias`` or an uploaded model; no install."""

    name = "model"
    pushable = True
    keeps_set_env = True

    def check(self, spec: AppSpec, files: Files | None) -> None:
        if not spec.model:
            raise UsageError(f"app {spec.name!r}: a model app needs 'model'")
        model = spec.model
        if not _registered(model) and not any(
            p == model or p.startswith(model + "/") for p in files or {}
        ):
            raise UsageError(f"app {spec.name!r}: the model {model!r} was not uploaded")
        if spec.options.get("follow_alias") and not (model.startswith("models:/") and "@" in model):
            raise UsageError(
                f"app {spec.name!r}: follow-alias needs 'model: models:/<name>@<alias>', "
                f"not {model!r}"
            )

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        model = str(spec.model)
        if _registered(model) and staging.run_model is not None:
            # The instance cannot read the registry: the platform looks the model up and
            # hands over the verified file, its digest, the run id for the lineage header
            # and the types the run recorded for it.
            found = await asyncio.to_thread(staging.run_model, model)
            version = f" (version {found.version})" if found.version else ""
            staging.progress(f"model {model}{version}: {found.digest[:19]}")
            return {
                "model_file": str(found.path),
                "run_id": found.run_id,
                "name": found.name,
                "digest": found.digest,
                "version": found.version,
                "trusted_types": list(found.trusted_types),
            }
        if not files:
            return None
        return {"source": str(await staging.droplets.unpack(files, staging.progress))}

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        model = str(spec.model)
        options: list[str] = []
        cwd: Path | None = None
        read_only: tuple[Path, ...] = ()
        if droplet.get("model_file"):
            model = str(droplet["model_file"])
            options = _registered_options(droplet)
            read_only = (Path(model),)
        elif not _registered(model):
            cwd = Path(droplet["source"])
            model = str(cwd / model)
            read_only = (cwd,)
        command = ("/bin/sh", "-c", _SERVE, sys.executable, model, *options)
        requests = _request_log_folder(platform_dir, spec.name)
        return Launch(
            command,
            cwd=cwd,
            env={"CONVEYOR_REQUEST_LOG_DIR": str(requests)},
            read_only=read_only,
            read_write=(requests,),
        )

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        return _CHECK if spec.default_health else spec.health_check


def serves_model(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a model app's ``conveyor serve`` (which can wait as a warm spare)."""
    return len(argv) > 3 and tuple(argv[:3]) == ("/bin/sh", "-c", _SERVE)


def _registered(model: str) -> bool:
    return model.startswith(("run:", "models:/"))


def _registered_options(droplet: Mapping[str, Any]) -> list[str]:
    """``conveyor serve`` options for an exported model (older droplets have fewer keys)."""
    options = ["--name", str(droplet["name"])]
    if droplet.get("run_id"):
        options += ["--run-id", str(droplet["run_id"])]
    if droplet.get("version"):
        options += ["--model-version", str(droplet["version"])]
    if droplet.get("digest"):
        options += ["--expect-digest", str(droplet["digest"])]
        for name in droplet.get("trusted_types") or ():
            options += ["--trust-type", str(name)]
    return options


def _request_log_folder(platform_dir: Path, app: str) -> Path:
    """The app's request-log folder (``conveyor lineage`` reads it): writable by its instances.

    Only the platform's user reaches it (``platform_dir`` is private); an isolated
    instance, which may run as a uid of its own, sees it bound into its sandbox.
    """
    folder = platform_dir / "requests" / app
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o777)
    return folder
