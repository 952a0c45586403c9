"""OpenLineage events for runs, task steps and stream deployments (spec 2-0-2).

Where they go is a setting (``CONVEYOR_OPENLINEAGE``): nowhere (the
default), a JSON-lines file (``file:///var/log/lineage.jsonl``, one event a
line, appended with one write), or an HTTP endpoint in Marquez's API shape
(``http://host:5000`` → ``POST /api/v1/lineage``). Sending never fails or
holds up the work it describes: HTTP posts go from a background thread, and
a failure is logged once and dropped::

    emitter = Emitter.from_settings(settings)
    emitter.emit(run_event("START", run_uuid(run.id), "train", inputs=[file_dataset(p, d)]))
    emitter.close()        # waits (briefly) for posts still in flight

Datasets are named as OpenLineage's naming conventions say (a local file:
namespace ``file``, name its absolute path) and carry their content digest as
their version (the ``version`` dataset facet).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor._version import __version__
from conveyor.config import Settings

__all__ = [
    "NAMESPACE",
    "Emitter",
    "dataset",
    "facet",
    "file_dataset",
    "run_event",
    "run_uuid",
]

log = logging.getLogger("conveyor.openlineage")

#: The job namespace every Conveyor job is in.
NAMESPACE = "conveyor"
PRODUCER = f"https://pypi.org/project/conveyor/{__version__}"
_SPEC = "https://openlineage.io/spec"
_EVENT_SCHEMA = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
#: Standard facets this module writes: name -> schema URL.
_FACETS = {
    "jobType": f"{_SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "version": f"{_SPEC}/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet",
    "parent": f"{_SPEC}/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "processing_engine": f"{_SPEC}/facets/1-1-1/ProcessingEngineRunFacet.json"
    "#/$defs/ProcessingEngineRunFacet",
    "errorMessage": f"{_SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
}
#: Conveyor's own facets (a custom facet names its producer and a schema URL of its own).
_CUSTOM_SCHEMA = PRODUCER + "#/openlineage/{name}"


def facet(kind: str, /, **fields: Any) -> dict[str, Any]:
    """A facet: the standard one ``kind`` names, or Conveyor's own."""
    schema = _FACETS.get(kind) or _CUSTOM_SCHEMA.format(name=kind)
    return {"_producer": PRODUCER, "_schemaURL": schema, **fields}


def run_uuid(run_id: str) -> str:
    """A Conveyor id as the UUID OpenLineage wants (a 32-hex run id is one already)."""
    import uuid  # not at import: `conveyor run` starts without it

    try:
        return str(uuid.UUID(hex=run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"conveyor:{run_id}"))


def dataset(namespace: str, name: str, digest: str | None = None) -> dict[str, Any]:
    """A dataset; its content digest, when known, is its version."""
    found: dict[str, Any] = {"namespace": namespace, "name": name}
    if digest:
        found["facets"] = {"version": facet("version", datasetVersion=digest)}
    return found


def file_dataset(path: str | Path, digest: str | None = None) -> dict[str, Any]:
    """A local file as a dataset (namespace ``file``, name the absolute path)."""
    return dataset("file", os.path.abspath(path), digest)


def run_event(
    event_type: str,
    run_id: str,
    job: str,
    *,
    inputs: Sequence[Mapping[str, Any]] = (),
    outputs: Sequence[Mapping[str, Any]] = (),
    run_facets: Mapping[str, Any] | None = None,
    job_facets: Mapping[str, Any] | None = None,
    processing: str = "BATCH",
    job_type: str = "JOB",
    when: datetime | None = None,
) -> dict[str, Any]:
    """One RunEvent: START, RUNNING, COMPLETE, FAIL or ABORT of ``run_id`` (a UUID) of ``job``."""
    moment = when or datetime.now(UTC)
    return {
        "eventType": event_type,
        "eventTime": moment.isoformat(),
        "producer": PRODUCER,
        "schemaURL": _EVENT_SCHEMA,
        "run": {
            "runId": run_id,
            "facets": {
                "processing_engine": facet(
                    "processing_engine", version=__version__, name="Conveyor"
                ),
                **(run_facets or {}),
            },
        },
        "job": {
            "namespace": NAMESPACE,
            "name": job,
            "facets": {
                "jobType": facet(
                    "jobType", processingType=processing, integration="CONVEYOR", jobType=job_type
                ),
                **(job_facets or {}),
            },
        },
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


class Emitter:
    """Sends events to the configured destination; never raises, never blocks for long."""

    def __init__(self, url: str | None, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Emitter:
        return cls(settings.openlineage)

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.url is None:
            return
        try:
            body = json.dumps(event, separators=(",", ":"), default=str).encode()
            if self.url.startswith("file://"):
                self._append(body)
            else:
                self._post_later(body)
        except Exception as exc:
            self._failed(exc)

    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for the HTTP posts still queued."""
        if self._thread is None or self._queue is None:
            return
        self._queue.put(None)
        self._thread.join(self.timeout if timeout is None else timeout)
        self._thread = self._queue = None

    def _append(self, body: bytes) -> None:
        path = Path(str(self.url).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, body + b"\n")
        finally:
            os.close(fd)

    def _post_later(self, body: bytes) -> None:
        if self._queue is None:
            self._queue = queue.Queue(maxsize=1000)
            self._thread = threading.Thread(
                target=self._sender, args=(self._queue,), name="conveyor-openlineage", daemon=True
            )
            self._thread.start()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._failed(RuntimeError("more than 1000 events waiting to be sent"))

    def _sender(self, waiting: queue.Queue[bytes | None]) -> None:
        import urllib.request

        endpoint = str(self.url).rstrip("/") + "/api/v1/lineage"
        while (body := waiting.get()) is not None:
            request = urllib.request.Request(  # noqa: S310 - http(s) only (config checks it)
                endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                    answer.read()
            except Exception as exc:
                self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("OpenLineage events to %s are not getting through: %s", self.url, exc)
