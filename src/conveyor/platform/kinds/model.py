"""Model apps: a model file or folder (or a run's model) served by the serving runtime."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kinds.base import Files, Launch, Staging
from conveyor.platform.spec import AppSpec, HealthCheckSpec

__all__ = ["ModelKind"]

#: The serving runtime of the platform's own interpreter; "$1" is the model.
_SERVE = 'exec "$0" -m conveyor serve "$1" --host 127.0.0.1 --port "$PORT"'
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
        if not files:
            return None
        return {"source": str(await staging.droplets.unpack(files, staging.progress))}

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        model = str(spec.model)
        if not model.startswith("run:"):
            model = str(Path(droplet["source"]) / model)
        return Launch(("/bin/sh", "-c", _SERVE, sys.executable, model), cwd=platform_dir)

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        return _CHECK if spec.default_health else spec.health_check
