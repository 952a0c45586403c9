"""``conveyor run``, ``conveyor runs [show|diff]`` and ``conveyor reproduce``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from conveyor.cli.run_admin import add_commands


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter for the script (read with conveyor.param). Repeatable.",
)
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="PATH",
    help="A file the run reads; stored by digest. Repeatable.",
)
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    metavar="PATH",
    help="A file the run writes; stored and checked by reproduce. Repeatable.",
)
@click.option("--name", "-n", help="A name for the run (default: the script's name).")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    help="The run seed (default: drawn at random and recorded).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 4096),
    help="Threads for OpenMP/BLAS (default: OMP_NUM_THREADS, else all cores).",
)
@click.option(
    "--experiment",
    "-e",
    help="Group the run under this experiment (default: the current folder's name).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(
    params: tuple[str, ...],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    name: str | None,
    seed: int | None,
    threads: int | None,
    experiment: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and record everything its result depends on.

    \b
    Example:
      conveyor run --param n_estimators=200 --input data/train.csv -- python train.py
    """
    import conveyor.cli.output as out
    from conveyor.config import get_settings
    from conveyor.repro.recorder import RunRequest, execute, parse_params

    cmd = list(command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    request = RunRequest(
        command=cmd,
        cwd=Path.cwd(),
        params=parse_params(list(params)),
        inputs=list(inputs),
        outputs=list(outputs),
        name=name,
        seed=seed,
        threads=threads,
        experiment=experiment,
    )
    record = execute(request, get_settings())
    out.run_summary(record)
    sys.exit(out.exit_status(record))


class _RunsGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `conveyor runs <id>` reads as `conveyor runs show <id>`.
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("runs", cls=_RunsGroup, invoke_without_command=True)
@click.option(
    "--limit",
    "-l",
    type=click.IntRange(1, 1_000_000),
    default=30,
    show_default=True,
    help="How many runs to list (a page).",
)
@click.option(
    "--page",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Which page of --limit runs (as fast at any depth; filtered or sorted listings count "
    "the runs before it, --after does not).",
)
@click.option(
    "--after",
    metavar="CURSOR",
    help="Continue after the page that printed this cursor (as fast at any depth).",
)
@click.option(
    "--status",
    type=click.Choice(
        ["RUNNING", "FINISHED", "FAILED", "KILLED", "INTERRUPTED", "LOST"], case_sensitive=False
    ),
    help="Only runs in this state (LOST: RUNNING, but its recorder is gone).",
)
@click.option("--experiment", "-e", help="Only the runs of this experiment.")
@click.option(
    "--where",
    "-w",
    metavar="EXPRESSION",
    help="Only runs matching a search, e.g. \"metrics.auc > 0.9 and tags.stage = 'prod'\".",
)
@click.option("--deleted", is_flag=True, help="List deleted runs (restorable) instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def runs_group(
    ctx: click.Context,
    limit: int,
    page: int,
    after: str | None,
    status: str | None,
    experiment: str | None,
    where: str | None,
    deleted: bool,
    as_json: bool,
) -> None:
    """List recorded runs, newest first (subcommands: show, diff, tag, untag, delete, restore).

    \b
    A search names params.KEY, metrics.KEY (latest value), tags.KEY and the
    attributes id, name, status, experiment, started, ended; it joins
    comparisons (= != < <= > >= like) with and, or, not and parentheses:
      conveyor runs --where "params.n_estimators >= 200 and metrics.auc > 0.9"
      conveyor runs --where "name like 'rf-%' or tags.stage = 'prod'"

    A full page ends with the cursor of the next one, on stderr:
    ``conveyor runs --after CURSOR`` continues there.
    """
    import conveyor.cli.output as out

    if ctx.invoked_subcommand is not None:
        return
    from conveyor.config import get_settings
    from conveyor.store.listing import RunFilter
    from conveyor.store.records import RunStatus
    from conveyor.store.registry import Registry

    if after is not None and page != 1:
        raise click.UsageError("give --page or --after, not both")
    wanted = status.upper() if status else None
    offset = (page - 1) * limit
    with Registry.from_settings(get_settings()) as registry:
        if wanted in ("RUNNING", "LOST"):
            # LOST is not stored: it is a RUNNING row whose recorder is gone, as the table
            # labels it; so both are told apart here, over the RUNNING rows (few).
            running = registry.list_runs_page(
                limit=1_000_000,
                after=after,
                only=RunFilter(RunStatus.RUNNING, experiment, where, deleted),
            ).runs
            matching = [r for r in running if out.status_label(r) == wanted]
            runs = matching[offset : offset + limit]
            next_cursor = None
            if len(matching) > offset + limit:
                from conveyor.store.listing import encode_cursor

                next_cursor = encode_cursor(runs[-1].started_at, runs[-1].id)
        else:
            found = registry.list_runs_page(
                limit=limit,
                after=after,
                offset=offset,
                only=RunFilter(RunStatus(wanted) if wanted else None, experiment, where, deleted),
            )
            runs, next_cursor = found.runs, found.next
    if not runs and page > 1 and not as_json:
        # Not "no runs yet": the walk to the page found fewer runs than the pages before it.
        click.echo(f"No runs on page {page}: this listing has {offset:,} runs or fewer.")
        return
    out.runs_table(runs, as_json=as_json, filtered=bool(where or experiment or status or deleted))
    if next_cursor is not None:
        click.echo(f"next page: conveyor runs --after {next_cursor}", err=True)


add_commands(runs_group)


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.option("--packages", is_flag=True, help="Also list every package of the environment.")
@click.option(
    "--points",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="At most this many points of each metric's history in --json (evenly thinned).",
)
def show_command(run_id: str, as_json: bool, packages: bool, points: int) -> None:
    """Everything recorded for RUN_ID (a unique prefix is enough)."""
    import conveyor.cli.output as out
    from conveyor.config import get_settings
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.registry import Registry

    settings = get_settings()
    with Registry.from_settings(settings) as registry:
        run = registry.get_run(run_id)
        # Histories are read only for the JSON, the one view that shows them.
        history = (
            [m for s in run.metrics for m in registry.metric_history(run.id, s.key, points)]
            if as_json
            else None
        )
    out.run_details(
        run,
        ArtifactStore.from_settings(settings),
        as_json=as_json,
        packages=packages,
        history=history,
    )


@runs_group.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff_command(run_a: str, run_b: str, as_json: bool) -> None:
    """What differs between two runs: params, code, packages, seeds, metrics, outputs."""
    import conveyor.cli.output as out
    from conveyor.config import get_settings
    from conveyor.repro.compare import diff_runs
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.registry import Registry

    settings = get_settings()
    with Registry.from_settings(settings) as registry:
        a, b = registry.get_run(run_a), registry.get_run(run_b)
    sections = diff_runs(a, b, ArtifactStore.from_settings(settings))
    out.diff_report(a, b, sections, as_json=as_json)


@click.command("reproduce")
@click.argument("run_id")
@click.option(
    "--verify", is_flag=True, help="Exit with status 1 if any output differs from the original's."
)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to re-create the code (default: a new folder in CONVEYOR_HOME).",
)
@click.option(
    "--no-env",
    is_flag=True,
    help="Reuse the current interpreter instead of re-creating the recorded packages.",
)
def reproduce_command(run_id: str, verify: bool, workdir: Path | None, no_env: bool) -> None:
    """Re-create RUN_ID's code, inputs and environment, re-run it and compare every output."""
    import conveyor.cli.output as out
    from conveyor.config import get_settings
    from conveyor.repro.reproduce import reproduce

    result = reproduce(
        run_id,
        get_settings(),
        workdir=workdir,
        rebuild_env=not no_env,
        progress=lambda msg: click.echo(msg, err=True),
    )
    out.reproduce_report(result)
    if verify and not result.identical:
        sys.exit(1)
    if result.run.exit_code not in (0, None):
        sys.exit(out.exit_status(result.run))
