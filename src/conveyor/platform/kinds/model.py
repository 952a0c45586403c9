"""Model apps: a model file or folder (or a run's model) served by the serving runtime."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kinds.base import Files, Launch, Staging
from conveyor.platform.spec import AppSpec, HealthCheckSpec

__all__ = ["ModelKind"]

#: The serving runtime of the platform's own interpreter; "$1" is the model, then its options.
_SERVE = 'm="$1"; shift; exec "$0" -m conveyor serve "$m" --host 127.0.0.1 --port "$PORT" "$@"'
_CHECK = HealthCheckSpec(type="http", endpoint="/v2/health/ready")


class ModelKind:
    """``model: run:<id>/<model>`` or an uploaded model; nothing to install."""

    name = "model"
    pushable = True
    keeps_set_env = True

    def check(self, spec: AppSpec, files: Files | None) -> None:
        if not spec.model:
            raise UsageError(f"app {spec.name!r}: a model app needs 'model'")
        model = spec.model
        if not model.startswith("run:") and not any(
            p == model or p.startswith(model + "/") for p in files or {}
        ):
            raise UsageError(f"app {spec.name!r}: the model {model!r} was not uploaded")

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        model = str(spec.model)
        if model.startswith("run:") and staging.run_model is not None:
            # The instance cannot read the registry: the platform looks the run up and
            # hands over the model file, and its run id for the lineage header.
            found = await asyncio.to_thread(staging.run_model, model)
            return {"model_file": str(found.path), "run_id": found.run_id, "name": found.name}
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
            options = ["--run-id", str(droplet["run_id"]), "--name", str(droplet["name"])]
            read_only = (Path(model),)
        elif not model.startswith("run:"):
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
