"""The ``stream`` app kind: a platform app that runs one node of a stream in the stream runtime.

Registered into the platform's kind registry on import, so the controller
runs stream apps without knowing what a stream is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform import AppSpec, Files, HealthCheckSpec, Launch, Staging, register_kind

__all__ = ["StreamKind"]

#: One instance of the stream runtime, from the platform's own interpreter.
_STREAM = 'exec "$0" -m conveyor.streams.run --instance-index "$CONVEYOR_INSTANCE_INDEX"'
_CHECK = HealthCheckSpec(type="http", endpoint="/health")


class StreamKind:
    """A stream app: the stream runtime running one node of a stream (``options``: its launch).

    ``options`` holds ``stream_app`` (the runtime's launch spec), ``stream`` and
    ``position`` (which stream made the app, and where in its definition).
    """

    name = "stream"
    pushable = False
    #: A redeploy gives the whole environment (a user app's paths): nothing is kept.
    keeps_set_env = False

    def check(self, spec: AppSpec, files: Files | None) -> None:
        if "stream_app" not in spec.options:
            raise UsageError(f"app {spec.name!r}: a stream app needs its launch spec")

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        return None  # it runs from the platform's own interpreter: nothing to stage

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        env = {"CONVEYOR_STREAM_APP": json.dumps(spec.options["stream_app"])}
        # What the deployer gave it (see .stream_sandbox): the binder's folder, its model ...
        return Launch(
            ("/bin/sh", "-c", _STREAM, sys.executable),
            env=env,
            read_only=tuple(Path(p) for p in spec.options.get("read_only", ())),
            read_write=tuple(Path(p) for p in spec.options.get("read_write", ())),
        )

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        return _CHECK if spec.default_health else spec.health_check


register_kind(StreamKind())
