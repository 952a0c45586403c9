"""Cloud Foundry's environment for apps that read it: ``VCAP_SERVICES``, ``VCAP_APPLICATION`` ...

An app written for Cloud Foundry finds its bound services, its name and its
limits where CF puts them, in the shapes CF documents, so libraries such as
``cfenv`` work unchanged. Two halves: what is the same for every instance of
a revision (:func:`cf_environment`, beside ``CONVEYOR_SERVICES``) and what
each instance adds (:func:`cf_instance_environment`, beside ``PORT``).

>>> env = cf_environment("iris", 3, {"db": {"uri": "postgresql://db"}}, ["iris.localhost"])
>>> json.loads(env["VCAP_SERVICES"])["user-provided"][0]["credentials"]
{'uri': 'postgresql://db'}
>>> json.loads(env["VCAP_APPLICATION"])["application_uris"]
['iris.localhost']
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["cf_environment", "cf_instance_environment"]

_MIB = 1024 * 1024
#: Names a Conveyor app's ids are derived from, so they stay the same from push to push.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "conveyor:apps")


def cf_environment(
    app: str,
    revision: int,
    services: Mapping[str, Mapping[str, Any]],
    uris: Iterable[str],
    *,
    memory: int | None = None,
    disk: int | None = None,
) -> dict[str, str]:
    """``VCAP_APPLICATION`` and ``VCAP_SERVICES`` of one revision of ``app``.

    ``services`` maps each bound (user-provided) service to the credentials the
    app sees; ``memory`` and ``disk`` are bytes, told in MiB as CF's ``limits``.
    """
    app_id = str(uuid.uuid5(_NAMESPACE, app))
    version = str(uuid.uuid5(_NAMESPACE, f"{app}/{revision}"))
    limits = {key: size // _MIB for key, size in (("mem", memory), ("disk", disk)) if size}
    listed = list(uris)
    application = {
        "application_id": app_id,
        "application_name": app,
        "application_uris": listed,
        "application_version": version,
        "limits": limits,
        "name": app,
        "process_id": app_id,
        "process_type": "web",
        "space_name": "conveyor",
        "organization_name": "conveyor",
        "uris": listed,
        "version": version,
    }
    bound: list[dict[str, Any]] = [
        {
            "label": "user-provided",
            "name": name,
            "instance_name": name,
            "binding_name": None,
            "credentials": dict(credentials),
            "syslog_drain_url": None,
            "tags": [],
            "volume_mounts": [],
        }
        for name, credentials in services.items()
    ]
    return {
        "VCAP_APPLICATION": json.dumps(application),
        "VCAP_SERVICES": json.dumps({"user-provided": bound} if bound else {}),
    }


def cf_instance_environment(index: int, port: int) -> dict[str, str]:
    """What one instance adds: its index, a GUID of its own (new at each start) and its port."""
    return {
        "CF_INSTANCE_INDEX": str(index),
        "CF_INSTANCE_GUID": str(uuid.uuid4()),
        "CF_INSTANCE_PORT": str(port),
        "PORT": str(port),
    }
