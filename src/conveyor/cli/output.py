"""How the CLI shows runs: tables, details, diffs and verification reports (Rich)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from conveyor.store.records import human_duration

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.repro.compare import Section
    from conveyor.repro.reproduce import ReproduceResult
    from conveyor.store.blobs import BlobStore
    from conveyor.store.records import MetricRecord, RunRecord


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_table(table: Any) -> None:
    """Print a Rich table to stdout."""
    _console().print(table)


def exit_status(run: RunRecord) -> int:
    """The shell's convention: the exit status, or 128 + the signal number."""
    code = run.exit_code if run.exit_code is not None else 1
    return 128 - code if code < 0 else code


def status_label(run: RunRecord) -> str:
    """The status, or LOST for a RUNNING run whose recorder died on this host."""
    if run.status.value == "RUNNING" and run.pid and run.host == os.uname().nodename:
        try:
            os.kill(run.pid, 0)
        except ProcessLookupError:
            return "LOST"
        except PermissionError:
            pass
    return run.status.value


_STYLE = {
    "FINISHED": "green",
    "FAILED": "red",
    "KILLED": "red",
    "INTERRUPTED": "yellow",
    "RUNNING": "cyan",
    "LOST": "magenta",
}


_duration = human_duration


def when(ts: float) -> str:
    """A local timestamp as the CLI prints it."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def mib(size: int | None) -> str:
    """A size in bytes as whole MiB (``120M``), or ``-`` when unknown."""
    return "-" if size is None else f"{size / (1024 * 1024):.0f}M"


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def run_summary(run: RunRecord) -> None:
    """One line on stderr after ``conveyor run``."""
    counts = [
        f"{len(run.params)} params",
        f"{len(run.latest_metrics())} metrics",
        f"{len(run.outputs())} outputs",
    ]
    if run.models:
        counts.append(f"{len(run.models)} model{'s' if len(run.models) > 1 else ''}")
    status = run.status.value
    color = _STYLE.get(status, "white")
    extra = f" ({run.error})" if run.error else ""
    click.echo(
        click.style(f"Run {run.id[:12]} {status}", fg=color, bold=True)
        + f" in {_duration(run.duration)}{extra}; recorded {', '.join(counts)}. "
        + f"See: conveyor runs show {run.id[:12]}",
        err=True,
    )
    from conveyor.repro.checks import warnings_of

    for line in warnings_of(run):
        click.echo(click.style("warning: ", fg="yellow", bold=True) + line, err=True)


def runs_table(runs: list[RunRecord], *, as_json: bool, filtered: bool = False) -> None:
    if as_json:
        click.echo(json.dumps([_run_json(r, brief=True) for r in runs], indent=2))
        return
    if not runs:
        click.echo(
            "No runs match."
            if filtered
            else "No runs yet. Record one with: conveyor run -- python train.py"
        )
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("ID", "NAME", "EXPERIMENT", "STATUS", "STARTED", "DURATION", "PARAMS", "METRICS")
    with_tags = any(r.tags for r in runs)
    for col in (*columns, "TAGS") if with_tags else columns:
        table.add_column(col, no_wrap=col not in ("PARAMS", "METRICS", "TAGS"))
    for run in runs:
        label = status_label(run)
        params = " ".join(f"{k}={_short(v, 16)}" for k, v in list(run.params.items())[:4])
        metrics = " ".join(f"{k}={v:.4g}" for k, v in list(run.latest_metrics().items())[:4])
        tags = " ".join(f"{k}={_short(v, 16)}" for k, v in run.tags.items())
        table.add_row(
            run.id[:12],
            _short(run.name, 24),
            _short(run.experiment or "-", 16),
            f"[{_STYLE.get(label, 'white')}]{label}[/]",
            when(run.started_at),
            _duration(run.duration),
            params,
            metrics,
            *((tags,) if with_tags else ()),
        )
    _console().print(table)


def _run_json(
    run: RunRecord, *, brief: bool = False, history: list[MetricRecord] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "status": status_label(run),
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration": run.duration,
        "exit_code": run.exit_code,
        "experiment": run.experiment,
        "tags": run.tags,
        "deleted_at": run.deleted_at,
        "params": run.params,
        "metrics": run.latest_metrics(),
    }
    if brief:
        return data
    data.update(
        command=run.command,
        cwd=run.cwd,
        seed=run.seed,
        host=run.host,
        code=run.code,
        environment=run.environment,
        reproduces=run.reproduces,
        error=run.error,
        stdout=run.stdout_digest,
        stderr=run.stderr_digest,
        metric_history=[vars(m) for m in (run.metrics if history is None else history)],
        files=[vars(f) for f in run.files],
        models=[{k: v for k, v in vars(m).items() if k != "run_id"} for m in run.models],
    )
    return data


def run_details(
    run: RunRecord,
    store: BlobStore,
    *,
    as_json: bool,
    packages: bool,
    history: list[MetricRecord] | None = None,
) -> None:
    """One run in full; ``history`` is its metric histories (downsampled) for the JSON."""
    if as_json:
        click.echo(json.dumps(_run_json(run, history=history), indent=2, default=str))
        return
    console = _console()
    label = status_label(run)
    env = run.environment
    code = run.code
    console.print(f"[bold]Run {run.id}[/]  {run.name}  [{_STYLE.get(label, 'white')}]{label}[/]")
    rows: list[tuple[str, str]] = [
        ("experiment", run.experiment or "-"),
        ("tags", " ".join(f"{k}={v}" for k, v in run.tags.items()) or "-"),
        *((("deleted", when(run.deleted_at)),) if run.deleted_at is not None else ()),
        ("command", " ".join(run.command)),
        ("cwd", run.cwd),
        ("started", f"{when(run.started_at)}  duration {_duration(run.duration)}"),
        ("exit", f"{run.exit_code}" + (f"  ({run.error})" if run.error else "")),
        ("seed", str(run.seed)),
        (
            "code",
            f"commit {(code.get('commit') or '-')[:12]}  branch {code.get('branch') or '-'}"
            f"  dirty {code.get('dirty')}  snapshot {code.get('snapshot')} "
            f"({code.get('files')} files)",
        ),
        ("python", f"{env.get('python')} {env.get('executable', '')}"),
        ("packages", f"{env.get('package_count', '?')} distributions ({env.get('packages')})"),
        ("threads", " ".join(f"{k}={v}" for k, v in env.get("threads", {}).items())),
        (
            "blas",
            ", ".join(
                f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)"
                for b in env.get("blas", [])
            )
            or "-",
        ),
        ("host", f"{run.host}  {env.get('host', {}).get('cpu', {}).get('model', '')}"),
    ]
    if run.reproduces:
        rows.append(("reproduces", run.reproduces))
    from conveyor.repro.remote import remote_facts

    for key, value in remote_facts(env, rows):
        console.print(f"  [dim]{key:<10}[/] {value}", markup=True)
    if run.params:
        console.print("[bold]Params[/]")
        unused = set(env.get("checks", {}).get("unused_params", []))
        for k, v in run.params.items():
            note = "  [yellow](unused: given, never read by the code)[/]" if k in unused else ""
            console.print(f"  {k} = {json.dumps(v)}{note}", markup=True, highlight=False)
    if run.metrics:
        console.print(
            "[bold]Metrics[/] (last value; count, min and max when logged more than once)"
        )
        for line in metric_summaries(run):
            console.print(f"  {line}", markup=False, highlight=False)
    for role in ("input", "output"):
        listed = [f for f in run.files if f.role == role]
        if listed:
            console.print(f"[bold]{role.capitalize()}s[/]")
            for f in listed:
                console.print(f"  {f.path}  {f.digest}  {f.size} bytes")
    if run.models:
        console.print("[bold]Models[/]")
        for m in run.models:
            sig = m.signature or {}
            console.print(
                f"  {m.name}  {m.format}  {m.path}  {m.digest}  "
                f"{len(sig.get('inputs', []))} inputs, task {sig.get('task', '?')}"
            )
    skipped, excluded = code.get("skipped", []), code.get("excluded_outputs", [])
    if skipped or excluded:
        console.print("[bold]Left out of the code snapshot[/]")
        for item in skipped:
            console.print(f"  {item['path']}  ({item['reason']})", markup=False, highlight=False)
        for item in excluded:
            console.print(
                f"  {item['path']}  {item['digest']}  output of run {item['run'][:12]}",
                markup=False,
                highlight=False,
            )
    from conveyor.repro.checks import warnings_of

    warnings = warnings_of(run)
    if warnings:
        console.print("[bold yellow]Warnings[/]")
        for line in warnings:
            console.print(f"  {line}", markup=False, highlight=False)
    console.print(f"[bold]Logs[/]  stdout {run.stdout_digest}  stderr {run.stderr_digest}")
    if packages and env.get("packages"):
        console.print("[bold]Packages[/]")
        for p in store.read_json(env["packages"]):
            console.print(
                f"  {p['name']}=={p['version']}" + (f"  ({p['url']})" if "url" in p else "")
            )


def metric_summaries(run: RunRecord) -> list[str]:
    """One line per metric: its last value, and count, min and max when it has several."""
    values: dict[str, list[float]] = {}
    for m in sorted(run.metrics, key=lambda m: (m.step or 0, m.timestamp)):
        values.setdefault(m.key, []).append(m.value)
    return [
        f"{key} = {series[-1]:.6g}"
        + (
            f"  ({len(series)} values, min {min(series):.6g}, max {max(series):.6g})"
            if len(series) > 1
            else ""
        )
        for key, series in values.items()
    ]


def _cell(value: Any) -> str:
    return "-" if value is None else _short(value, 60)


def diff_report(a: RunRecord, b: RunRecord, sections: list[Section], *, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {s.title: [{"what": w, "a": x, "b": y} for w, x, y in s.rows] for s in sections},
                indent=2,
                default=str,
            )
        )
        return
    console = _console()
    if not sections:
        console.print(f"Runs {a.id[:12]} and {b.id[:12]} do not differ.")
        return
    from rich.table import Table

    for section in sections:
        table = Table(title=section.title, title_justify="left", box=None, header_style="bold")
        table.add_column("")
        table.add_column(a.id[:12], overflow="fold")
        table.add_column(b.id[:12], overflow="fold")
        for what, x, y in section.rows:
            table.add_row(
                what, "-" if x is None else _short(x, 60), "-" if y is None else _short(y, 60)
            )
        console.print(table)
        console.print()


def reproduce_report(result: ReproduceResult) -> None:
    console = _console()
    original, new = result.original, result.run
    console.print(
        f"Reproduction {new.id[:12]} of run {original.id[:12]}: {new.status.value} "
        f"in {_duration(new.duration)}"
    )
    if not result.outputs:
        console.print(
            "[yellow]The original run recorded no outputs, so there is nothing to verify.[/]"
        )
    for cmp in result.outputs:
        color = {"identical": "green", "different": "red", "missing": "red"}[cmp.status]
        console.print(f"  [{color}]{cmp.status:<9}[/] {cmp.path}", markup=True)
        if cmp.detail:
            for line in cmp.detail.splitlines():
                console.print(f"             {line}", markup=False, highlight=False)
    old_m, new_m = original.latest_metrics(), new.latest_metrics()
    changed = [k for k in sorted(set(old_m) | set(new_m)) if old_m.get(k) != new_m.get(k)]
    for k in changed:
        console.print(f"  [yellow]metric {k}[/]: {old_m.get(k)} -> {new_m.get(k)}")
    verdict = (
        "[green bold]All outputs identical.[/]"
        if result.identical
        else "[red bold]Outputs differ.[/]"
    )
    console.print(verdict + f"  Code re-created in {result.workdir}")
