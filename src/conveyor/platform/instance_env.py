"""What an instance's environment holds: nothing of the platform's own settings.

An instance starts from :func:`platform_env` (a minimal PATH, the locale, the
time zone); :func:`instance_env` adds its manifest's variables, its bound
services and the platform's documented variables. The sandbox that runs it
(:mod:`.isolation`) drops :data:`PLATFORM_SECRETS` from whatever it is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MINIMAL_PATH",
    "PLATFORM_SECRETS",
    "PLATFORM_VARIABLES",
    "SANDBOX_TMP",
    "instance_env",
    "platform_env",
    "without_platform_secrets",
]

#: The PATH an instance starts with (its manifest may prepend its venv's bin).
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The variables the platform itself documents for an instance.
PLATFORM_VARIABLES = (
    "PORT",
    "CONVEYOR_INSTANCE_INDEX",
    "CONVEYOR_APP",
    "CONVEYOR_APP_REVISION",
    "CONVEYOR_SERVICES",
)
#: Variables of the platform's own settings: an instance never sees them, whoever set them.
#: (CONVEYOR_TRUSTED_TYPES is not one: it only widens what an instance itself loads, and
#: the platform passes the operator's value to the model apps it serves.)
PLATFORM_SECRETS = frozenset(
    {
        "CONVEYOR_HOME",
        "CONVEYOR_API",
        "CONVEYOR_API_TOKEN",
        "CONVEYOR_ROUTER",
        "CONVEYOR_DATABASE_URL",
        "CONVEYOR_ARTIFACT_ROOT",
        "CONVEYOR_ENV_CACHE",
        "CONVEYOR_ISOLATION",
    }
)
#: Where an instance's own temporary folder appears inside its sandbox.
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private folder bound there, not the shared /tmp


def platform_env(host_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every instance starts from: a minimal PATH, the locale and the time zone."""
    host = os.environ if host_env is None else host_env
    env = {"PATH": MINIMAL_PATH, "LANG": host.get("LANG") or "C.UTF-8"}
    for name in ("LC_ALL", "TZ"):
        if host.get(name):
            env[name] = host[name]
    return env


def instance_env(
    manifest_env: Mapping[str, str],
    *,
    app: str,
    revision: int,
    index: int,
    port: int,
    services: Mapping[str, Mapping[str, Any]] | None = None,
    tmpdir: str = SANDBOX_TMP,
    host_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one instance: nothing of the platform's own.

    What the manifest gives, the bound services (``CONVEYOR_SERVICES``, JSON),
    the platform's documented variables, a minimal PATH (the manifest's wins),
    LANG/LC_ALL/TZ, and HOME and TMPDIR at the instance's own temporary folder.
    """
    bound = [{"name": name, "credentials": dict(creds)} for name, creds in (services or {}).items()]
    env = platform_env(host_env)
    env.update(manifest_env)
    env.update(
        {
            "PORT": str(port),
            "CONVEYOR_INSTANCE_INDEX": str(index),
            "CONVEYOR_APP": app,
            "CONVEYOR_APP_REVISION": str(revision),
            "CONVEYOR_SERVICES": json.dumps({"user-provided": bound}),
            "HOME": tmpdir,
            "TMPDIR": tmpdir,
        }
    )
    return without_platform_secrets(env)


def without_platform_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the platform's own settings (:data:`PLATFORM_SECRETS`)."""
    return {k: v for k, v in env.items() if k not in PLATFORM_SECRETS}
