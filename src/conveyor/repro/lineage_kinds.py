"""The built-in lineage node kinds: request, app revision, model version, artifact, run, code,
stream, task step.

Each kind is a :class:`~conveyor.repro.lineage.NodeKind` registered at import.
A registered model version (``models:/name/3``, ``models:/name@alias``) sits
between the app revisions serving it and its artifact: up to the digest, then
to the run that saved it; down to the revisions and stream apps using it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.repro.lineage import Link, Node, NodeKind, Sources, register_node_kind
from conveyor.repro.registered import PREFIX, resolve_version
from conveyor.store import lineage as queries
from conveyor.store.apps import AppRepository
from conveyor.store.models import ModelRepository, ModelVersion
from conveyor.store.requestlog import find_request, oldest_record

__all__: list[str] = []

_DIGESTS = ("blake3:", "sha256:")


def _none(node: Node, sources: Sources) -> list[Link]:
    return []


# -- requests ------------------------------------------------------------------------


def _request(text: str, sources: Sources) -> Node | None:
    if not text or len(text) > 200 or not text.isprintable() or " " in text:
        return None
    root = sources.request_logs
    hit = find_request(root, text)
    if hit is None:
        oldest = oldest_record(root)
        if oldest is not None and _hexish(text):
            raise NotFoundError(
                f"request {text} is not in the request logs ({root}), which hold requests since "
                f"{_when(oldest)} and keep them {_days(sources.settings.request_log_retention)}: "
                "an older request has passed the retention window, and a request answered "
                "while the log was off (CONVEYOR_REQUEST_LOG) was never recorded",
            )
        return None
    retention = sources.settings.request_log_retention
    if hit.file.stat().st_mtime < time.time() - retention:
        raise NotFoundError(
            f"request {text} was answered at {_when(hit.at)}, older than the request log's "
            f"retention window ({_days(retention)}); its record is no longer kept"
        )
    header = hit.header
    details = {**header, "at": hit.at}
    return Node("request", text, f"request {text}", details)


def _request_up(node: Node, sources: Sources) -> list[Link]:
    app, revision = node.details.get("app"), node.details.get("revision")
    if app and revision is not None:
        found = _revision(sources, str(app), int(revision))
        if found is not None:
            return [Link(found, "answered")]
    registered = str(node.details.get("registered") or "")  # ``name/N``: a standalone serve
    name, _, number = registered.rpartition("/")
    if name and number.isdigit():
        version = _version(sources, name, int(number))
        if version is not None:
            return [Link(version, "answered")]
    digest = node.details.get("digest")
    return [Link(_artifact(str(digest), sources), "answered")] if digest else []


# -- app revisions ---------------------------------------------------------------------


def _revision(sources: Sources, app: str, number: int) -> Node | None:
    try:
        record = AppRepository(sources.registry).revision(app, number)
    except ConveyorError:
        return None
    details = {
        "app": app,
        "revision": number,
        "description": record.description,
        "model": record.spec.get("model"),
        "created_at": record.created_at,
    }
    droplet = record.droplet or {}
    digest = droplet.get("digest") or _revision_digest(
        sources, record.spec.get("model"), record.files or {}
    )
    if digest:
        details["digest"] = digest
    if str(record.spec.get("model") or "").startswith("models:/") and droplet.get("version"):
        details["registered"] = {"model": droplet.get("name"), "version": droplet["version"]}
    return Node("revision", f"{app}/{number}", f"app {app} revision {number}", details)


def _revision_digest(sources: Sources, model: object, files: Mapping[str, Any]) -> str | None:
    text = str(model or "")
    if text.startswith("run:"):
        run_id, _, name = text.removeprefix("run:").partition("/")
        try:
            full = sources.registry.resolve_id(run_id)
            return sources.registry.get_model(full, name).digest
        except ConveyorError:
            return None
    entry = files.get(text)
    return str(entry["digest"]) if isinstance(entry, dict) and "digest" in entry else None


def _revision_up(node: Node, sources: Sources) -> list[Link]:
    registered = node.details.get("registered")
    if registered:
        found = _version(sources, str(registered["model"]), int(registered["version"]))
        if found is not None:
            return [Link(found, "serves")]
    digest = node.details.get("digest")
    return [Link(_artifact(str(digest), sources), "serves")] if digest else []


# -- registered model versions ------------------------------------------------------------


def _version(sources: Sources, name: str, number: int) -> Node | None:
    try:
        found = ModelRepository(sources.registry).version(name, number)
    except ConveyorError:
        return None
    return _version_node(found)


def _version_node(found: ModelVersion) -> Node:
    aliases = f" @{', @'.join(found.aliases)}" if found.aliases else ""
    label = f"model {found.model} version {found.version}{aliases}"
    details = {
        "model": found.model,
        "version": found.version,
        "digest": found.digest,
        "format": found.format,
        "run_id": found.run_id,
        "source": found.source,
        "aliases": list(found.aliases),
        "created_at": found.created_at,
    }
    return Node("model-version", f"{found.model}/{found.version}", label, details)


def _parse_version(text: str, sources: Sources) -> Node | None:
    if not text.startswith(PREFIX):
        return None
    return _version_node(resolve_version(text, sources.registry))


def _version_up(node: Node, sources: Sources) -> list[Link]:
    return [Link(_artifact(str(node.details["digest"]), sources), "registered")]


def _version_down(node: Node, sources: Sources) -> list[Link]:
    name, number = str(node.details["model"]), int(node.details["version"])
    aliases = set(node.details.get("aliases") or ())
    links: list[Link] = []
    for rev in queries.revisions_of_version(sources.registry, name, number, aliases):
        found = _revision(sources, rev.app, rev.number)
        if found is not None:
            links.append(Link(found, "serves"))
    for stream in queries.streams_scoring_version(sources.registry, name, number, aliases):
        links.append(Link(_stream(stream), "scores"))
    return links


def _stream(stream: queries.StreamUse) -> Node:
    key = f"{stream.stream}@{stream.version}"
    label = f"stream {stream.stream} version {stream.version}"
    return Node("stream", key, label, {"definition": stream.definition})


# -- artifacts ----------------------------------------------------------------------------


def _artifact(digest: str, sources: Sources) -> Node:
    models = queries.models_with_digest(sources.registry, digest)
    if models:
        m = models[0]
        label = f"model {m.name} ({m.format}) {digest[:19]}"
        return Node("artifact", digest, label, {"model": m.name, "format": m.format})
    files = queries.file_uses(sources.registry, digest=digest)
    path = files[0].path if files else None
    label = f"{path} {digest[:19]}" if path else f"artifact {digest[:19]}"
    return Node("artifact", digest, label, {"path": path} if path else {})


def _parse_artifact(text: str, sources: Sources) -> Node | None:
    if text.startswith(_DIGESTS):
        return _artifact(text, sources)
    if text.startswith("run:") and "/" in text:
        run_id, _, name = text.removeprefix("run:").partition("/")
        full = sources.registry.resolve_id(run_id)
        return _artifact(sources.registry.get_model(full, name).digest, sources)
    path = Path(text).expanduser()
    if sources.files and (os.sep in text or path.suffix) and path.is_file():
        from conveyor.store.digests import digest_file

        return _artifact(digest_file(path), sources)
    return None


def _artifact_up(node: Node, sources: Sources) -> list[Link]:
    links = [
        Link(_run(use.run_id, sources), "wrote")
        for use in queries.file_uses(sources.registry, digest=node.key)
        if use.role == "output"
    ]
    links += [
        Link(_run(m.run_id, sources), "saved")
        for m in queries.models_with_digest(sources.registry, node.key)
    ]
    return links


def _artifact_down(node: Node, sources: Sources) -> list[Link]:
    registry = sources.registry
    links = [
        Link(_run(use.run_id, sources), "read")
        for use in queries.file_uses(registry, digest=node.key)
        if use.role == "input"
    ]
    for name, number in queries.versions_with_digest(registry, node.key):
        version = _version(sources, name, number)
        if version is not None:
            links.append(Link(version, "registered"))
    runs = {m.run_id for m in queries.models_with_digest(registry, node.key)}
    for rev in queries.revisions_serving(registry, run_ids=runs, digests={node.key}):
        if rev.model.startswith(PREFIX):
            continue  # reached through the model version it serves
        found = _revision(sources, rev.app, rev.number)
        if found is not None:
            links.append(Link(found, "serves"))
    for stream in queries.streams_scoring(registry, runs):
        links.append(Link(_stream(stream), "scores"))
    return links


# -- runs and their code ------------------------------------------------------------------


def _run(run_id: str, sources: Sources) -> Node:
    run = sources.registry.get_run(run_id)
    details = {
        "name": run.name,
        "status": run.status.value,
        "command": run.command,
        "seed": run.seed,
        "started_at": run.started_at,
        "commit": run.code.get("commit"),
        "dirty": bool(run.code.get("dirty")),
        "snapshot": run.code.get("snapshot"),
    }
    return Node("run", run.id, f"run {run.id[:12]} {run.name} ({run.status.value})", details)


def _parse_run(text: str, sources: Sources) -> Node | None:
    body = text.removeprefix("run:")
    if "/" in body or not body or not all(c in "0123456789abcdef" for c in body.lower()):
        return None
    try:
        return _run(sources.registry.resolve_id(body), sources)
    except NotFoundError:
        if text.startswith("run:"):
            raise
        return None


def _run_up(node: Node, sources: Sources) -> list[Link]:
    links: list[Link] = []
    commit, snapshot = node.details.get("commit"), node.details.get("snapshot")
    if commit or snapshot:
        label = f"code {str(commit)[:12]}" if commit else "code (not in git)"
        if node.details.get("dirty"):
            label += " + uncommitted changes"
        if snapshot:
            label += f", snapshot {str(snapshot)[:19]}"
        details = {"commit": commit, "snapshot": snapshot, "dirty": node.details.get("dirty")}
        code = Node("code", str(snapshot or commit), label, details)
        links.append(Link(code, "ran"))
    links += [
        Link(_artifact(use.digest, sources), "read")
        for use in queries.file_uses(sources.registry, run_id=node.key)
        if use.role == "input"
    ]
    return links


def _run_down(node: Node, sources: Sources) -> list[Link]:
    registry = sources.registry
    links = [
        Link(_artifact(use.digest, sources), "wrote")
        for use in queries.file_uses(registry, run_id=node.key)
        if use.role == "output"
    ]
    links += [
        Link(_artifact(m.digest, sources), "saved") for m in registry.get_run(node.key).models
    ]
    for step in queries.steps_of_run(registry, node.key):
        key = f"{step.execution}/{step.step}"
        label = f"task {step.task} step {step.step} (execution {step.execution[:12]})"
        links.append(Link(Node("task-step", key, label, {"state": step.state}), "ran"))
    return links


def _never(text: str, sources: Sources) -> Node | None:
    return None


def _hexish(text: str) -> bool:
    return all(c in "0123456789abcdef-" for c in text.lower())


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds / 3600:g} hours"


for _kind in (
    NodeKind("model-version", _parse_version, _version_up, _version_down),
    NodeKind("run", _parse_run, _run_up, _run_down),
    NodeKind("artifact", _parse_artifact, _artifact_up, _artifact_down),
    NodeKind("request", _request, _request_up, _none),
    NodeKind("revision", _never, _revision_up, _none),
    NodeKind("code", _never, _none, _none),
    NodeKind("stream", _never, _none, _none),
    NodeKind("task-step", _never, _none, _none),
):
    register_node_kind(_kind)
