"""Runs: the table (filtered, sorted and paged on the server), one run, and runs compared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor.errors import ConveyorError, UsageError
from conveyor.server.ui.context import Ui
from conveyor.store.records import RunRecord, RunStatus

__all__ = ["routes"]

PAGE = 25
#: How many of the newest runs the table filters and sorts (the registry has no paging yet).
SCAN = 5000
#: Metric columns shown: the most common keys among the listed runs.
METRIC_COLUMNS = 4
MAX_COMPARED = 8
_LOG_PREVIEW = 64 * 1024
_SPARK_POINTS = 120

_COLUMNS = [
    ("id", "ID"),
    ("name", "Name"),
    ("status", "Status"),
    ("started", "Started"),
    ("duration", "Duration"),
]


def _sort_key(key: str, *, descending: bool) -> Callable[[RunRecord], Any]:
    """A key that orders every run, runs without the value last in either order."""
    if key.startswith("metric:"):
        name = key.removeprefix("metric:")

        def metric(run: RunRecord) -> tuple[bool, float]:
            value = run.latest_metrics().get(name)
            # sorted in reverse for descending order, so there "present" must sort high
            return ((value is None) != descending, 0.0 if value is None else value)

        return metric
    simple: dict[str, Callable[[RunRecord], Any]] = {
        "id": lambda r: r.id,
        "name": lambda r: r.name.lower(),
        "status": lambda r: r.status.value,
        "started": lambda r: r.started_at,
        "duration": lambda r: ((r.duration is None) != descending, r.duration or 0.0),
    }
    if key not in simple:
        raise UsageError(f"runs cannot be sorted by {key!r}; pick a column heading to sort by")
    return simple[key]


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
        q: str = "",
        status: str = "",
        sort: str = "started",
        order: str = "desc",
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
        key = _sort_key(sort, descending=order == "desc")
        found = await run_in_threadpool(registry.list_runs, limit=SCAN, status=wanted)
        if q:
            needle = q.lower()
            found = [r for r in found if needle in r.name.lower() or r.id.startswith(needle)]
        found.sort(key=key, reverse=order == "desc")
        pages = max(1, -(-len(found) // PAGE))
        page = min(page, pages)
        shown = found[(page - 1) * PAGE : page * PAGE]
        metric_keys = _metric_keys(shown)

        def link(**change: Any) -> str:
            params = {"q": q, "status": status, "sort": sort, "order": order, "page": page}
            params.update(change)
            return "/ui/runs?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

        def sort_link(column: str) -> str:
            flip = "asc" if sort == column and order == "desc" else "desc"
            return link(sort=column, order=flip, page=1)

        return ui.view(
            request,
            "runs.html",
            runs=shown,
            total=len(found),
            page=page,
            pages=pages,
            q=q,
            status=status,
            statuses=[s.value for s in RunStatus],
            sort=sort,
            order=order,
            columns=[*_COLUMNS, *((f"metric:{k}", k) for k in metric_keys)],
            metric_keys=metric_keys,
            sort_link=sort_link,
            prev_link=link(page=page - 1) if page > 1 else None,
            next_link=link(page=page + 1) if page < pages else None,
            scanned=SCAN,
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
        "env_facts": env_facts,
        "unused": set(env.get("checks", {}).get("unused_params", [])),
        "latest": run.latest_metrics(),
        "sparks": {k: spark(v) for k, v in histories.items()},
        "points": counts,
        "warnings": warnings_of(run),
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
    return {
        "params": table([r.params for r in runs]),
        "metrics": table([r.latest_metrics() for r in runs]),
        "diffs": diffs,
    }
