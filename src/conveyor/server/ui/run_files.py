"""A run's files: its code snapshot as a tree with a file viewer, and input/output previews.

Every byte shown comes from the artifact store, by a digest the run itself
recorded (its code manifest or its input/output records): a path or digest in
a request is only ever looked up in those records, never handed to the file
system, and anything not found there is a 404.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.server.ui.context import Ui
from conveyor.store.records import RunRecord

__all__ = ["file_previews", "routes"]

#: The most of a code file the viewer shows.
VIEW_LIMIT = 256 * 1024
#: The most of an input or output read for a preview.
PREVIEW_LIMIT = 64 * 1024
PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 30
#: Previews drawn on a run's page; further files get a download link only.
PREVIEWED_FILES = 20
#: Raster images only: an SVG may carry script, so it is offered as a download.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def _manifest(ui: Ui, run: RunRecord) -> list[dict[str, Any]]:
    from conveyor.repro.snapshot import read_manifest

    snapshot = run.code.get("snapshot")
    if not snapshot:
        raise NotFoundError(f"run {run.id} recorded no code snapshot")
    try:
        return read_manifest(ui.controller.artifacts, snapshot)
    except ConveyorError as exc:
        raise NotFoundError(
            f"the code snapshot of run {run.id} is not readable: {exc.message}"
        ) from None


def tree(paths: list[str]) -> list[tuple[int, str, str | None]]:
    """Rows (depth, name, path) of a file tree; a folder's row has no path."""
    rows: list[tuple[int, str, str | None]] = []
    opened: tuple[str, ...] = ()
    for path in sorted(paths, key=lambda p: PurePosixPath(p).parts):
        parts = PurePosixPath(path).parts
        folders = parts[:-1]
        common = 0
        while common < min(len(opened), len(folders)) and opened[common] == folders[common]:
            common += 1
        for depth in range(common, len(folders)):
            rows.append((depth, folders[depth] + "/", None))
        opened = folders
        rows.append((len(folders), parts[-1], path))
    return rows


def _read(ui: Ui, digest: str, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of an artifact, and whether there was more."""
    try:
        with ui.controller.artifacts.open(digest) as handle:
            data = handle.read(limit + 1)
    except (ConveyorError, OSError):
        raise NotFoundError(f"artifact {digest} is not in the artifact store") from None
    return data[:limit], len(data) > limit


def _text(data: bytes) -> str | None:
    """The bytes as text, or None when they look binary."""
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:  # a character cut at the size cap
            return data[: exc.start].decode("utf-8")
        return None


def _preview(ui: Ui, run_id: str, path: str, digest: str) -> dict[str, Any]:
    suffix = PurePosixPath(path).suffix.lower()
    shown: dict[str, Any] = {"kind": "link", "src": f"/ui/runs/{run_id}/blobs/{digest}"}
    if suffix in IMAGE_TYPES:
        return {**shown, "kind": "image"}
    if suffix not in (".csv", ".json"):
        return shown
    try:
        data, cut = _read(ui, digest, PREVIEW_LIMIT)
    except NotFoundError as exc:
        return {**shown, "kind": "missing", "text": exc.message}
    text = _text(data)
    if text is None:
        return shown
    if suffix == ".json" and not cut:
        try:
            return {**shown, "kind": "json", "text": json.dumps(json.loads(text), indent=2)}
        except ValueError:
            return {**shown, "kind": "text", "text": text, "cut": cut}
    if suffix == ".csv":
        lines = text.splitlines()[: PREVIEW_ROWS + 1]
        if cut and len(lines) <= PREVIEW_ROWS:
            lines = lines[:-1]  # the last line may be cut short
        try:
            rows = [row[:PREVIEW_COLUMNS] for row in csv.reader(io.StringIO("\n".join(lines)))]
        except csv.Error:
            return {**shown, "kind": "text", "text": text, "cut": cut}
        return {**shown, "kind": "table", "rows": rows}
    return {**shown, "kind": "text", "text": text, "cut": cut}


def file_previews(ui: Ui, run: RunRecord) -> dict[str, dict[str, Any]]:
    """A preview of each of the run's first input and output files, by digest."""
    previews: dict[str, dict[str, Any]] = {}
    for f in run.files:
        if f.digest in previews:
            continue
        if len(previews) >= PREVIEWED_FILES:
            previews[f.digest] = {"kind": "link", "src": f"/ui/runs/{run.id}/blobs/{f.digest}"}
        else:
            previews[f.digest] = _preview(ui, run.id, f.path, f.digest)
    return previews


def _diff_lines(ui: Ui, digest: str) -> dict[str, Any]:
    """The recorded diff as (kind, line) pairs, kind one of add, del, hunk, file or ''."""
    data, cut = _read(ui, digest, VIEW_LIMIT)
    lines: list[tuple[str, str]] = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "")
        lines.append((kind, line))
    return {"digest": digest, "lines": lines, "cut": cut}


def _named(ui: Ui, run: RunRecord, digest: str) -> str:
    """The name the run recorded for ``digest``: 404 for a digest the run does not hold."""
    if digest == run.code.get("diff"):
        return "uncommitted.diff"
    for f in run.files:
        if f.digest == digest:
            return f.path
    if run.code.get("snapshot"):
        for entry in _manifest(ui, run):
            if entry["digest"] == digest:
                return str(entry["path"])
    raise NotFoundError(f"run {run.id} holds no file with digest {digest}")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(256 * 1024):
            yield chunk


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    registry = ui.controller.state.registry

    @api.get("/runs/{run_id}/code")
    async def code(
        request: Request, run_id: str, path: Annotated[str, Query(max_length=4096)] = ""
    ) -> Response:
        ui.session(request)
        run = await run_in_threadpool(registry.get_run, run_id)
        entries = await run_in_threadpool(_manifest, ui, run)
        viewed: dict[str, Any] | None = None
        if path:
            entry = next((e for e in entries if e["path"] == path), None)
            if entry is None:
                raise NotFoundError(f"the code snapshot of run {run.id} holds no file {path!r}")
            data, cut = await run_in_threadpool(_read, ui, entry["digest"], VIEW_LIMIT)
            viewed = {
                "path": path,
                "digest": entry["digest"],
                "text": _text(data),
                "cut": cut,
                "size": len(data),
            }
        diff = run.code.get("diff")
        return ui.view(
            request,
            "run_code.html",
            run=run,
            rows=tree([e["path"] for e in entries]),
            count=len(entries),
            viewed=viewed,
            diff=await run_in_threadpool(_diff_lines, ui, diff) if diff else None,
        )

    @api.get("/runs/{run_id}/blobs/{digest}")
    async def blob(request: Request, run_id: str, digest: str) -> Response:
        ui.session(request)
        run = await run_in_threadpool(registry.get_run, run_id)
        name = await run_in_threadpool(_named, ui, run, digest)
        try:
            handle = await run_in_threadpool(ui.controller.artifacts.open, digest)
        except (ConveyorError, OSError):
            raise NotFoundError(f"artifact {digest} is not in the artifact store") from None
        filename = PurePosixPath(name).name or "file"
        kind = IMAGE_TYPES.get(PurePosixPath(name).suffix.lower())
        disposition = "inline" if kind else "attachment"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)
        return StreamingResponse(
            _chunks(handle),
            media_type=kind or "application/octet-stream",
            headers={
                "content-disposition": f'{disposition}; filename="{safe}"',
                "cache-control": "private, max-age=3600",
            },
        )

    return api
