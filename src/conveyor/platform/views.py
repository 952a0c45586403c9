"""What the platform shows of its apps: `conveyor apps`, `conveyor app`, revisions, services."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.store.apps import AppRecord

if TYPE_CHECKING:
    from conveyor.platform.controller import Controller

__all__ = ["describe", "list_apps", "revisions", "services"]


def describe(controller: Controller, name: str) -> dict[str, Any]:
    """An app as ``conveyor app`` shows it."""
    app = controller.state.app(name)
    latest = controller.state.revisions(name)[-1].number
    now = time.time()
    instances = [
        {
            "index": inst.index,
            "revision": inst.revision,
            "state": inst.state,
            "ready": inst.ready,
            "since": inst.since,
            "uptime": now - inst.since,
            "pid": inst.pid,
            "port": inst.port,
            "restarts": inst.restarts,
            "memory": inst.memory,
            "cpu": inst.cpu,
            "last_crash": inst.last_crash,
            "isolation": inst.isolation,
        }
        for inst in controller.target.status(name, usage=True)
    ]
    scaling = None
    if app.revision:
        policy = controller.spec(controller.state.revision(name, app.revision)).autoscaling
        scaling = None if policy is None else policy.describe()
    load = controller.meter.read(name)
    # Only the local target keeps spares (a model app's, see platform/warm.py).
    spare = getattr(controller.target, "warm_spare", None)
    return {
        **_summary(controller, app, instances),
        "latest_revision": latest,
        "autoscaling": scaling,
        "load": {"ongoing": load.ongoing, "rate": load.rate, "p95_ms": load.p95_ms},
        "canary": None if (run := controller.canaries.get(name)) is None else run.view(),
        "instances_detail": instances,
        #: A model app's warm spare: pid, ready (model loaded), memory; None without one.
        "warm_spare": None if spare is None else spare(name, usage=True),
        "events": [
            {
                "at": e.at,
                "kind": e.kind,
                "instance": e.instance,
                "revision": e.revision,
                "details": e.details,
            }
            for e in controller.state.events(name, limit=10)
        ],
    }


def list_apps(controller: Controller) -> list[dict[str, Any]]:
    out = []
    for app in controller.state.apps():
        instances = [
            {"state": i.state, "ready": i.ready, "revision": i.revision, "last_crash": i.last_crash}
            for i in controller.target.status(app.name)
        ]
        run = controller.canaries.get(app.name)
        canary = None if run is None else {"revision": run.canary, "weight": run.weight}
        out.append({**_summary(controller, app, instances), "canary": canary})
    return out


def _summary(
    controller: Controller, app: AppRecord, instances: list[dict[str, Any]]
) -> dict[str, Any]:
    running = sum(1 for i in instances if i["state"] == "RUNNING" and i["ready"])
    failure = _failure(controller, app, instances)
    return {
        "name": app.name,
        "desired_state": app.state,
        "state": "crashed" if failure else _app_state(app, instances),
        #: Why it crashed: what it said last (or the supervisor's reason), its revision.
        "cause": None if failure is None else failure["cause"],
        "failed_revision": None if failure is None else failure["revision"],
        "last_lines": [] if failure is None else failure["last_lines"],
        "instances": app.instances,
        "running": running,
        "revision": app.revision,
        "kind": controller.spec(controller.state.revisions(app.name)[-1]).kind,
        "routes": [r.text for r in controller.target.routes(app.name)],
        "updated_at": app.updated_at,
    }


def revisions(controller: Controller, name: str) -> list[dict[str, Any]]:
    app = controller.state.app(name)
    outcomes = _canary_outcomes(controller, name)
    out = []
    for r in controller.state.revisions(name):
        spec = controller.spec(r)
        out.append(
            {
                "number": r.number,
                "created_at": r.created_at,
                "description": r.description,
                "deployed": r.number == app.revision,
                "kind": spec.kind,
                "env": sorted(spec.env),
                "services": list(spec.services),
                "lock_digest": (r.droplet or {}).get("lock_digest"),
                #: How its canary went: "running", "promoted: why", "rolled back: why" ...
                "canary": outcomes.get(r.number),
            }
        )
    return out


#: A canary's ending event and how ``conveyor revisions`` says it.
_ENDED = {
    "canary-promoted": "promoted",
    "canary-aborted": "aborted",
    "canary-rolled-back": "rolled back",
}


def _canary_outcomes(controller: Controller, name: str) -> dict[int, str]:
    """Revision -> how its canary ended (or that it runs), from the app's events."""
    out: dict[int, str] = {}
    for e in controller.state.events(name, limit=10_000):
        if e.revision is None:
            continue
        if e.kind == "canary-started":
            out[e.revision] = "running"
        elif e.kind in _ENDED:
            out[e.revision] = f"{_ENDED[e.kind]}: {e.details.get('reason', '')}"
    return out


def services(controller: Controller) -> list[dict[str, Any]]:
    bound = controller.state.bindings()
    return [
        {"name": name, "keys": sorted(creds), "bound_to": bound.get(name, [])}
        for name, creds in controller.state.services().items()
    ]


def _failure(
    controller: Controller, app: AppRecord, instances: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Why the app is down, when it is: its first push never ran, or every instance crash-loops.

    A first push whose instances never became healthy leaves the app stopped at
    revision 0; a started app none of whose instances is ready but some crashed
    is restarting after a crash (a model that cannot load does so for ever), not
    "starting".
    """
    if app.state == "stopped" and app.revision == 0:
        failed = controller.state.last_event(app.name, "deploy-failed")
        if failed is None:
            return None
        lines = list(failed.details.get("last_lines") or [])
        return {
            "cause": _cause(str(failed.details.get("reason") or "it did not start"), lines),
            "revision": failed.revision,
            "last_lines": lines,
        }
    if app.state != "started" or any(i["state"] == "RUNNING" and i["ready"] for i in instances):
        return None
    crashes = [i for i in instances if i.get("last_crash")]
    if not crashes:
        return None
    crash = crashes[-1]["last_crash"]
    lines = list(crash.get("last_lines") or [])
    return {
        "cause": _cause(str(crash.get("reason") or "crashed"), lines),
        "revision": crashes[-1]["revision"],
        "last_lines": lines,
    }


def _cause(reason: str, lines: list[str]) -> str:
    """The supervisor's reason, with the last thing the app said (often the real cause)."""
    said = next((line for line in reversed(lines) if line.strip()), None)
    return reason if said is None else f"{reason}; last output: {said.strip()}"


def _app_state(app: AppRecord, instances: list[dict[str, Any]]) -> str:
    if app.state == "stopped":
        return "stopped"
    if any(i["state"] == "RUNNING" and i["ready"] for i in instances):
        return "running"
    if any(i["state"] == "CRASHED" for i in instances):
        return "crashed"
    return "starting"
