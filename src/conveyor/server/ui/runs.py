"""Runs: the table (filtered, sorted and paged on the server), one run, and runs compared."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError, UsageError
from conveyor.repro.remote import remote_facts
from conveyor.server.ui.charts import chart
from conveyor.server.ui.context import Ui
from conveyor.server.ui.run_files import file_previews
from conveyor.server.ui.run_repro import reproductions
from conveyor.store.lineage import revisions_serving, versions_with_digest
from conveyor.store.listing import RunFilter, RunPage
from conveyor.store.records import RunRecord, RunStatus
from conveyor.store.search import SearchError

__all__ = ["routes"]

PAGE = 25
#: Metric columns shown: the most common keys among the listed runs.
METRIC_COLUMNS = 4
MAX_COMPARED = 8
_LOG_PREVIEW = 64 * 1024
_SPARK_POINTS = 120
_CHART_POINTS = 400

#: (sort key, heading); a key of None is not sortable.
_COLUMNS: list[tuple[str | None, str]] = [
    (None, "ID"),
    ("name", "Name"),
    ("experiment", "Experiment"),
    ("status", "Status"),
    ("started", "Started"),
    ("duration", "Duration"),
]


def _metric_keys(runs: list[RunRecord]) -> list[str]:
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.latest_metrics():
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:METRIC_COLUMNS]


def spark(points: list[tuple[float, float]], width: int = 160, height: int = 32) -> str:
    """An SVG polyline's points for a metric's history, downsampled to a few dozen points."""
    if len(points) < 2:
        return ""
    step = max(1, len(points) // _SPARK_POINTS)
    kept = points[::step]
    xs, ys = [p[0] for p in kept], [p[1] for p in kept]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 4) / ((x1 - x0) or 1.0)
    sy = (height - 4) / ((y1 - y0) or 1.0)
    return " ".join(f"{2 + (x - x0) * sx:.1f},{height - 2 - (y - y0) * sy:.1f}" for x, y in kept)


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()
    registry = ui.controller.state.registry

    @api.get("/runs")
    async def runs_page(
        request: Request,
        where: Annotated[str, Query(max_length=4000)] = "",
        experiment: Annotated[str, Query(max_length=200)] = "",
        status: str = "",
        deleted: str = "",
        sort: Annotated[str, Query(max_length=260)] = "started",
        order: str = "desc",
        after: Annotated[str, Query(max_length=200)] = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        ui.session(request)
        wanted: RunStatus | None = None
        if status:
            try:
                wanted = RunStatus(status)
            except ValueError:
                raise UsageError(
                    f"{status!r} is not a run status; use one of "
                    + ", ".join(s.value for s in RunStatus)
                ) from None
        if order not in ("asc", "desc"):
            raise UsageError(f"order {order!r} is neither 'asc' nor 'desc'")
        only = RunFilter(wanted, experiment or None, where or None, bool(deleted))
        problem: str | None = None
        try:
            found = await run_in_threadpool(
                registry.list_runs_page,
                limit=PAGE,
                after=after or None,
                offset=0 if after else (page - 1) * PAGE,
                only=only,
                sort=sort,
                descending=order == "desc",
            )
        except SearchError as exc:
            found, problem = RunPage(), exc.message
        shown = found.runs
        metric_keys = _metric_keys(shown)
        current = {
            "where": where,
            "experiment": experiment,
            "status": status,
            "deleted": deleted,
            "sort": sort,
            "order": order,
        }

        def link(**change: Any) -> str:
            params = {**current, **change}
            return "/ui/runs?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

        def sort_link(column: str) -> str:
            flip = "asc" if sort == column and order == "desc" else "desc"
            return link(sort=column, order=flip)

        next_link = None
        if found.next is not None:
            next_link = link(after=found.next)
        elif found.more:
            next_link = link(page=page + 1)
        return ui.view(
            request,
            "runs.html",
            http_status=400 if problem else 200,
            runs=shown,
            problem=problem,
            where=where,
            experiment=experiment,
            experiments=await run_in_threadpool(registry.experiments),
            status=status,
            deleted=deleted,
            statuses=[s.value for s in RunStatus],
            sort=sort,
            order=order,
            columns=[*_COLUMNS, *((f"metrics.{k}", k) for k in metric_keys)],
            metric_keys=metric_keys,
            sort_link=sort_link,
            first_link=link() if after or page > 1 else None,
            prev_link=link(page=page - 1) if page > 1 and not after else None,
            next_link=next_link,
        )

    @api.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        ui.session(request)
        run = await run_in_threadpool(registry.get_run, run_id)
        details = await run_in_threadpool(_details, ui, run)
        return ui.view(request, "run.html", run=run, **details)

    @api.get("/compare")
    async def compare(request: Request, run: Annotated[list[str], Query()]) -> Response:
        ui.session(request)
        if not 2 <= len(run) <= MAX_COMPARED:
            raise UsageError(f"compare 2 to {MAX_COMPARED} runs; {len(run)} were selected")
        runs = [await run_in_threadpool(registry.get_run, r) for r in run]
        return ui.view(request, "compare.html", runs=runs, **_comparison(ui, runs))

    return api


def _details(ui: Ui, run: RunRecord) -> dict[str, Any]:
    """What ``runs show`` shows, grouped, plus the logs' first lines and metric histories."""
    from conveyor.repro.checks import warnings_of

    env, code = run.environment, run.code
    facts = [
        ("command", " ".join(run.command)),
        ("cwd", run.cwd),
        ("host", f"{run.host}  {env.get('host', {}).get('cpu', {}).get('model', '')}"),
        ("seed", str(run.seed)),
        ("exit", f"{run.exit_code}" + (f"  ({run.error})" if run.error else "")),
        ("reproduces", run.reproduces or "-"),
    ]
    code_facts = [
        ("commit", (code.get("commit") or "-")[:12]),
        ("branch", code.get("branch") or "-"),
        ("dirty", str(code.get("dirty"))),
        ("snapshot", f"{code.get('snapshot')} ({code.get('files')} files)"),
    ]
    env_facts = [
        ("python", f"{env.get('python')} {env.get('executable', '')}"),
        ("packages", f"{env.get('package_count', '?')} distributions"),
        ("threads", " ".join(f"{k}={v}" for k, v in env.get("threads", {}).items()) or "-"),
        (
            "blas",
            ", ".join(
                f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)"
                for b in env.get("blas", [])
            )
            or "-",
        ),
    ]
    # Listings hold only each metric's latest value; histories are read here, thinned.
    registry = ui.controller.state.registry
    counts = {m.key: m.count for m in registry.metric_summaries(run.id)}
    histories: dict[str, list[tuple[float, float]]] = {}
    for key in counts:
        for i, m in enumerate(registry.metric_history(run.id, key, max_points=_SPARK_POINTS)):
            histories.setdefault(key, []).append(
                (float(m.step if m.step is not None else i), m.value)
            )
    return {
        "facts": facts,
        "code_facts": code_facts,
        "env_facts": remote_facts(env, env_facts),
        "unused": set(env.get("checks", {}).get("unused_params", [])),
        "latest": run.latest_metrics(),
        "sparks": {k: spark(v) for k, v in histories.items()},
        "points": counts,
        "warnings": warnings_of(run),
        "registered": {m.name: versions_with_digest(registry, m.digest) for m in run.models},
        "serving": revisions_serving(
            registry, run_ids={run.id}, digests={m.digest for m in run.models}
        )
        if run.models
        else [],
        "previews": file_previews(ui, run),
        "reproductions": reproductions(ui, run),
        "stdout": _preview(ui, run.stdout_digest),
        "stderr": _preview(ui, run.stderr_digest),
    }


def _preview(ui: Ui, digest: str | None) -> str | None:
    """The start of a log kept in the artifact store (by digest: no path reaches the disk)."""
    if not digest:
        return None
    try:
        with ui.controller.artifacts.open(digest) as handle:
            data = handle.read(_LOG_PREVIEW + 1)
    except (ConveyorError, OSError):
        return "(not in the artifact store)"
    text = data[:_LOG_PREVIEW].decode("utf-8", "replace")
    return text + (
        "\n… (cut; the whole log is in the artifact store)" if len(data) > _LOG_PREVIEW else ""
    )


def _comparison(ui: Ui, runs: list[RunRecord]) -> dict[str, Any]:
    """Params and latest metrics side by side, and what ``runs diff`` says of each pair."""
    from conveyor.repro.compare import diff_runs

    def table(values: list[dict[str, Any]]) -> list[tuple[str, list[Any], bool]]:
        keys = sorted(set().union(*values))
        return [
            (k, [v.get(k) for v in values], len({repr(v.get(k)) for v in values}) > 1) for k in keys
        ]

    diffs: list[tuple[RunRecord, list[Any], str | None]] = []
    for other in runs[1:]:
        try:
            sections = diff_runs(runs[0], other, ui.controller.artifacts)
        except ConveyorError as exc:
            sections = []
            diffs.append((other, sections, exc.message))
            continue
        diffs.append((other, sections, None))
    registry = ui.controller.state.registry
    charts = []
    for key in sorted(set().union(*(r.latest_metrics() for r in runs))):
        series = [
            [
                (float(m.step if m.step is not None else i), m.value)
                for i, m in enumerate(registry.metric_history(r.id, key, max_points=_CHART_POINTS))
            ]
            for r in runs
        ]
        drawn = chart(key, series)
        if drawn is not None:
            charts.append(drawn)
    return {
        "params": table([r.params for r in runs]),
        "metrics": table([r.latest_metrics() for r in runs]),
        "tags": table([r.tags for r in runs]),
        "charts": charts,
        "diffs": diffs,
    }
