"""Changes to a live app on a cluster: its variables, a restart, a rollback; its revisions and
events. Pure functions on the objects the API returns.

A set-env or a rollback is a new revision, as locally: the live Deployment
again, its pod template changed and labelled with the next number. A restart
keeps the revision and stamps the pod template, as ``kubectl rollout
restart`` does. The revisions a rollback can go back to are the cluster's
own history: the Deployment controller keeps one ReplicaSet per pod template
(``revisionHistoryLimit``, 10), each with the template it ran, so nothing is
recorded beside the cluster (and ``kubectl rollout undo`` reads the same).

An app that follows its model's alias is rendered again from the spec on its
Deployment (:data:`~.render.APP_SPEC`) when the alias moves: a set-env or a
rollback writes the variables it runs with there too, and a rollback the
model version its template serves, so the next roll keeps what they made (as
locally, where the follower restages the newest revision).

    again = with_env(live, {"LEVEL": "debug"}, [], revision=4)
    kept = kept_revisions(replica_sets, "triage")      # {3: template, 2: template, ...}
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kubernetes.deploy import reapplicable
from conveyor.platform.kubernetes.render import APP_SPEC

__all__ = [
    "PLATFORM_VARIABLES",
    "RESTARTED_AT",
    "app_events",
    "kept_revisions",
    "revision_of",
    "revision_row",
    "rolled_back",
    "variables",
    "with_env",
    "with_restart",
]

#: The pod-template annotation ``kubectl rollout restart`` sets: a new template, same revision.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
#: On a pod template: what made the revision (``set-env LEVEL``, ``rollback to 2``).
CHANGE = "conveyor.dev/change"
_REVISION = "conveyor.dev/revision"
_VERSION = "app.kubernetes.io/version"
#: The controller's own count of a Deployment's pod templates, on each ReplicaSet.
_CONTROLLER_REVISION = "deployment.kubernetes.io/revision"
#: What a model app's pod template says of the model it serves (the Deployment says it too).
_LINEAGE = tuple(
    f"conveyor.dev/{key}" for key in ("model-digest", "model-name", "model-version", "run-id")
)
#: Variables the platform sets on every container: a push renders them, set-env may not.
PLATFORM_VARIABLES = frozenset(
    {
        "PORT",
        "CONVEYOR_APP",
        "CONVEYOR_APP_REVISION",
        "CONVEYOR_ARTIFACTS",
        "CONVEYOR_ARTIFACT_ROOT",
        "CONVEYOR_SERVICES",
        "CONVEYOR_STREAM_APP",
        "MODEL",
    }
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def revision_of(obj: Mapping[str, Any]) -> int:
    """The revision an object (or a pod template) is labelled with; 0 when it has none."""
    version = str(((obj.get("metadata") or {}).get("labels") or {}).get(_VERSION, "0"))
    return int(version) if version.isdigit() else 0


def _again(live: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a live Deployment to apply again, without what its controller writes."""
    deployment = reapplicable(copy.deepcopy(dict(live)))
    (deployment["metadata"].get("annotations") or {}).pop(_CONTROLLER_REVISION, None)
    return deployment


def _relabel(deployment: dict[str, Any], revision: int, change: str | None) -> dict[str, Any]:
    """The Deployment and its pod template labelled as ``revision`` (its variable too)."""
    template = deployment["spec"]["template"]
    for meta in (deployment["metadata"], template.setdefault("metadata", {})):
        meta.setdefault("labels", {})[_VERSION] = str(revision)
        meta.setdefault("annotations", {})[_REVISION] = str(revision)
    if change is not None:
        template["metadata"]["annotations"][CHANGE] = change
    for box in template["spec"]["containers"]:
        for item in box.get("env") or ():
            if item.get("name") == "CONVEYOR_APP_REVISION":
                item["value"] = str(revision)
    return deployment


def _followed(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment saying what its pod template runs: the model it serves, and for an
    app following its alias the variables of the spec the follower renders from."""
    notes = deployment["metadata"].setdefault("annotations", {})
    template = deployment["spec"]["template"]
    served = (template.get("metadata") or {}).get("annotations") or {}
    for key in _LINEAGE:
        if key in served:
            notes[key] = served[key]
        else:
            notes.pop(key, None)
    try:
        spec = json.loads(notes[APP_SPEC]) if APP_SPEC in notes else None
    except ValueError:  # edited by hand: the follower reports it and leaves the app be
        spec = None
    if isinstance(spec, dict):
        spec["env"] = variables(template)
        notes[APP_SPEC] = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return deployment


def with_env(
    live: Mapping[str, Any], values: Mapping[str, str], unset: Sequence[str], *, revision: int
) -> dict[str, Any]:
    """The live Deployment again as ``revision``, with ``values`` set and ``unset`` removed."""
    app = str(live["metadata"]["name"])
    for key in [*values, *unset]:
        if not _NAME.match(key):
            raise UsageError(f"{key!r} is not a variable name (letters, digits and _)")
        if key in PLATFORM_VARIABLES:
            raise UsageError(f"{key} is set by the platform on every pod of {app!r}")
    deployment = _again(live)
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    env: list[dict[str, Any]] = list(box.get("env") or ())
    present = {item.get("name") for item in env}
    missing = [k for k in unset if k not in present]
    if missing:
        raise UsageError(f"app {app!r} has no variable {', '.join(missing)} to unset")
    env = [item for item in env if item.get("name") not in {*values, *unset}]
    env.extend({"name": k, "value": v} for k, v in values.items())
    box["env"] = env
    names = [*values, *(f"-{k}" for k in unset)]
    return _followed(_relabel(deployment, revision, "set-env " + " ".join(names)))


def with_restart(live: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The live Deployment again, its pod template stamped: every pod is replaced."""
    deployment = _again(live)
    meta = deployment["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {})[RESTARTED_AT] = at.isoformat(timespec="seconds")
    return deployment


def kept_revisions(
    replica_sets: Sequence[Mapping[str, Any]], app: str
) -> dict[int, dict[str, Any]]:
    """The pod template of each revision the cluster keeps for ``app``, newest number first.

    Several ReplicaSets can hold one revision (a restart makes a new one): the
    controller's latest of them is taken.
    """
    best: dict[int, tuple[int, dict[str, Any]]] = {}
    for item in replica_sets:
        meta = item.get("metadata") or {}
        owners = meta.get("ownerReferences") or ()
        if owners and not any(
            o.get("kind") == "Deployment" and o.get("name") == app for o in owners
        ):
            continue
        template = copy.deepcopy((item.get("spec") or {}).get("template") or {})
        number = revision_of(template)
        if not number or not template.get("spec"):
            continue
        order = str((meta.get("annotations") or {}).get(_CONTROLLER_REVISION, "0"))
        rank = int(order) if order.isdigit() else 0
        if number not in best or rank >= best[number][0]:
            labels = (template.get("metadata") or {}).get("labels") or {}
            labels.pop("pod-template-hash", None)  # the controller's, not ours
            best[number] = (rank, template)
    return {n: best[n][1] for n in sorted(best, reverse=True)}


def rolled_back(
    live: Mapping[str, Any], template: Mapping[str, Any], *, to: int, revision: int
) -> dict[str, Any]:
    """The live Deployment running revision ``to``'s pod template again, as ``revision``."""
    deployment = _again(live)
    again = copy.deepcopy(dict(template))
    (again.get("metadata") or {}).get("annotations", {}).pop(RESTARTED_AT, None)
    deployment["spec"]["template"] = again
    return _followed(_relabel(deployment, revision, f"rollback to {to}"))


def variables(template: Mapping[str, Any]) -> dict[str, str]:
    """The variables a pod template's container has of its app's own (set-env's, the
    manifest's): not the platform's, not references to Secrets."""
    box = ((template.get("spec") or {}).get("containers") or [{}])[0]
    return {
        str(item["name"]): str(item["value"])
        for item in box.get("env") or ()
        if item.get("name") not in PLATFORM_VARIABLES and "value" in item
    }


def revision_row(number: int, template: Mapping[str, Any], *, deployed: bool) -> dict[str, Any]:
    """A kept revision as ``revisions --target`` lists it: its image, variables and change."""
    box = ((template.get("spec") or {}).get("containers") or [{}])[0]
    env = list(variables(template))
    change = ((template.get("metadata") or {}).get("annotations") or {}).get(CHANGE)
    return {
        "number": number,
        "deployed": deployed,
        "image": box.get("image"),
        "env": env,
        "description": change or "push",
    }


def _timestamp(event: Mapping[str, Any]) -> float:
    meta = event.get("metadata") or {}
    for text in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        meta.get("creationTimestamp"),
    ):
        if text:
            try:
                return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def app_events(
    events: Sequence[Mapping[str, Any]], app: str, replica_sets: Sequence[str]
) -> list[dict[str, Any]]:
    """The events of ``app``'s objects (its Deployment, Service, HPA ..., its ReplicaSets and
    their pods), oldest first, as rows: at, type, reason, object, message, count."""
    prefixes = tuple(f"{name}-" for name in replica_sets)
    rows: list[dict[str, Any]] = []
    for event in events:
        involved = event.get("involvedObject") or {}
        name, kind = str(involved.get("name", "")), str(involved.get("kind", ""))
        if not (
            name == app
            or name in replica_sets
            or (kind == "Pod" and prefixes and name.startswith(prefixes))
        ):
            continue
        rows.append(
            {
                "at": _timestamp(event),
                "type": str(event.get("type") or "Normal"),
                "reason": str(event.get("reason") or ""),
                "object": f"{kind.lower()}/{name}",
                "message": str(event.get("message") or "").strip(),
                "count": int(event.get("count") or 1),
            }
        )
    rows.sort(key=lambda row: row["at"])
    return rows
