"""OpenLineage events of stream deployments: a version's run STARTs as it deploys, FAILs if
the deploy does, and COMPLETEs when a newer version replaces it or the stream is undeployed.

The job is the stream (``stream/<name>``, processing type STREAMING); its
datasets are the destinations it reads from and writes to outside itself,
named by the binder they live on, and the models its ``score`` apps use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.repro.openlineage import Emitter, dataset, facet, run_event, run_uuid
from conveyor.streams.binders import shown_binder_url

if TYPE_CHECKING:
    from conveyor.streams.plan import PlannedApp

__all__ = ["StreamLineage"]


class StreamLineage:
    """Sends the events of one platform's stream deployments (nowhere, unless configured)."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    def started(
        self, name: str, version: int, planned: Sequence[PlannedApp], binder: str, definition: str
    ) -> None:
        if not self.emitter.enabled:
            return
        namespace = shown_binder_url(binder)
        reads = {a.launch.input for a in planned if a.launch.input}
        writes = {a.launch.output for a in planned if a.launch.output}
        inputs = [dataset(namespace, d) for d in sorted(reads - writes)]
        inputs += [
            dataset("conveyor", str(a.launch.options["model"]))
            for a in planned
            if a.launch.options.get("model")
        ]
        outputs = [dataset(namespace, d) for d in sorted(writes - reads)]
        self._emit("START", name, version, inputs=inputs, outputs=outputs, definition=definition)

    def ended(self, name: str, version: int, state: str, error: str | None = None) -> None:
        if not self.emitter.enabled:
            return
        self._emit(state, name, version, error=error)

    def _emit(
        self,
        state: str,
        name: str,
        version: int,
        *,
        inputs: Sequence[dict[str, Any]] = (),
        outputs: Sequence[dict[str, Any]] = (),
        definition: str | None = None,
        error: str | None = None,
    ) -> None:
        run_facets: dict[str, Any] = {
            "conveyor_stream": facet("conveyor_stream", stream=name, version=version)
        }
        if error:
            run_facets["errorMessage"] = facet(
                "errorMessage", message=error, programmingLanguage="PYTHON"
            )
        job_facets: dict[str, Any] = {}
        if definition:
            job_facets["conveyor_definition"] = facet("conveyor_definition", dsl=definition)
        self.emitter.emit(
            run_event(
                state,
                run_uuid(f"stream:{name}@{version}"),
                f"stream/{name}",
                inputs=inputs,
                outputs=outputs,
                run_facets=run_facets,
                job_facets=job_facets,
                processing="STREAMING",
                job_type="STREAM",
            )
        )
