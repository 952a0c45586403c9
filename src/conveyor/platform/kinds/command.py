"""Command apps: a command run in the app's source, in an environment from its requirements."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.instance_env import MINIMAL_PATH
from conveyor.platform.kinds.base import Files, Launch, Staging
from conveyor.platform.spec import AppSpec, HealthCheckSpec

__all__ = ["CommandKind"]


class CommandKind:
    """``command`` run through the shell in the droplet's source, its venv first on PATH."""

    name = "command"
    pushable = True
    keeps_set_env = True

    def check(self, spec: AppSpec, files: Files | None) -> None:
        if not spec.command:
            raise UsageError(f"app {spec.name!r}: a command app needs 'command'")

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        if not files:
            return None
        requirements = None if spec.requirements is None else str(spec.requirements)
        return await staging.droplets.build(spec.name, requirements, files, staging)

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        venv = Path(droplet["venv"])
        source = Path(droplet["source"])
        # Nothing of the platform's own PATH: the app sees its venv and the system's tools.
        env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{MINIMAL_PATH}"}
        command = ("/bin/sh", "-c", "exec " + str(spec.command))
        return Launch(command, cwd=source, env=env, read_only=(venv, source))

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        return spec.health_check
