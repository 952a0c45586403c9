"""What every resource module of the control API shares: strict bodies, errors, long operations.

Errors become JSON ``{"error", "hint"}`` with a 4xx status chosen by the error's
class (:func:`status_for`). Operations that take a while (push, restart,
deploy, ...) answer with a stream of JSON lines: ``{"progress": ...}`` as they
go, then one ``{"result": ...}`` or ``{"error": ..., "status": ...}``; the
operation runs to its end even if the client leaves (:func:`operation`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any

import orjson
from fastapi import Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.errors import ConveyorError, NotFoundError, UsageError
from conveyor.platform.errors import ManifestError, StagingError

__all__ = [
    "DIGEST",
    "AppName",
    "FileIn",
    "Progress",
    "Strict",
    "error_body",
    "files_of",
    "from_thread",
    "ndjson",
    "operation",
    "status_for",
]

#: What an app is called: a DNS label, as Cloud Foundry and Kubernetes require.
APP_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
DIGEST = r"^blake3:[0-9a-f]{64}$"

AppName = Annotated[str, Path(pattern=APP_NAME, description="The app's name.")]

Progress = Callable[[str], None]


class Strict(BaseModel):
    """A request body that refuses fields it does not know (a typo is a 400, not ignored)."""

    model_config = ConfigDict(extra="forbid")


class FileIn(Strict):
    digest: str = Field(pattern=DIGEST)
    mode: int = Field(0o644, ge=0, le=0o7777)


def files_of(files: Mapping[str, FileIn] | None) -> dict[str, dict[str, Any]] | None:
    """An upload listing as the platform takes it: path -> {digest, mode}."""
    return None if files is None else {k: v.model_dump() for k, v in files.items()}


def status_for(error: ConveyorError) -> int:
    """The HTTP status of an error a user caused."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, (UsageError, ManifestError)) or error.exit_code == 2:
        return 400
    if isinstance(error, StagingError):
        return 422
    return 409


def error_body(error: ConveyorError) -> dict[str, Any]:
    return {"error": error.message, "hint": error.hint}


def ndjson(item: Mapping[str, Any]) -> bytes:
    return orjson.dumps(item) + b"\n"


#: Operations still running, whether or not their client is still listening.
_RUNNING: set[asyncio.Task[None]] = set()


def from_thread(progress: Progress) -> Progress:
    """``progress`` for a worker thread to call: each message is handed to this event loop."""
    loop = asyncio.get_running_loop()

    def tell(message: str) -> None:
        loop.call_soon_threadsafe(progress, message)

    return tell


def operation(work: Callable[[Progress], Awaitable[Any]]) -> StreamingResponse:
    """Run ``work`` to the end even if the client leaves; stream its progress and result."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            done = await work(lambda message: queue.put_nowait({"progress": message}))
            result = asdict(done) if is_dataclass(done) and not isinstance(done, type) else done
            queue.put_nowait({"result": result})
        except ConveyorError as exc:
            queue.put_nowait({**error_body(exc), "status": status_for(exc)})
        except Exception as exc:  # reported, never a hang
            queue.put_nowait({"error": f"internal error: {exc!r}", "status": 500})
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(run())
    _RUNNING.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_RUNNING.discard)

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield ndjson(item)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
