"""Reading apps: ``conveyor apps``, ``app NAME``, ``logs``, ``events`` and ``revisions``.

What the platform runs and what happened to it, as the control API (or, with
``--target``, a Kubernetes target) reports it; the commands that change an
app are in :mod:`.platform`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from conveyor.cli.canary import canary_text
from conveyor.cli.catalog import catalog_group
from conveyor.cli.client import connect
from conveyor.cli.output import mib, when
from conveyor.cli.platform import app_argument, target_option

__all__ = [
    "app_command",
    "apps_command",
    "events_command",
    "logs_command",
    "revisions_command",
]


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


@click.command("apps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@target_option
def apps_command(as_json: bool, target: str) -> None:
    """Every app: state, instances running/desired, routes, revision."""
    if target != "local":
        from conveyor.cli.kubernetes import list_on

        list_on(target, as_json)

        return
    apps = connect().call("GET", "/v1/apps")
    if as_json:
        click.echo(json.dumps(apps, indent=2))
        return
    if not apps:
        click.echo("No apps. Push one with `conveyor push`.")
        return
    from rich.table import Table

    from conveyor.cli.output import print_table

    table = Table("name", "state", "instances", "revision", "kind", "routes", box=None)
    for a in apps:
        table.add_row(
            a["name"],
            a["state"],
            f"{a['running']}/{a['instances']}",
            str(a["revision"])
            + (
                f" ({a['canary']['revision']} at {a['canary']['weight']} %)"
                if a.get("canary")
                else ""
            ),
            a["kind"],
            ", ".join(a["routes"]),
        )
    print_table(table)
    for a in apps:
        if a.get("cause"):
            click.echo(f"{a['name']} crashed (revision {a['failed_revision']}): {a['cause']}")


class _AppGroup(click.Group):
    """``conveyor app NAME`` shows a platform app; ``conveyor app show NAME`` any name at all.

    ``conveyor app list|info|register|unregister`` were the stream app catalogue's
    commands before ``conveyor catalog``; for one release they still run it, with a note.
    """

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in catalog_group.commands:
            verb = args[0]
            click.echo(
                f"Note: `conveyor app {verb}` is deprecated and will show the app named "
                f"{verb!r} in the next release; use `conveyor catalog {verb}` "
                f"(and `conveyor app show {verb}` for an app of that name).",
                err=True,
            )
            return verb, catalog_group.commands[verb], args[1:]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "show", self.commands["show"], args
        return super().resolve_command(ctx, args)


@click.group("app", cls=_AppGroup, subcommand_metavar="NAME | show NAME")
def app_command() -> None:
    """A platform app: `conveyor app NAME`, or `conveyor app show NAME` for any name."""


@app_command.command("show")
@app_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@target_option
def app_show_command(name: str, as_json: bool, target: str) -> None:
    """One app: its instances (state, since, cpu, memory, restarts), routes, events."""
    if target != "local":
        from conveyor.cli.kubernetes import show_on

        show_on(target, name, as_json)

        return
    app = connect().call("GET", f"/v1/apps/{name}")
    if as_json:
        click.echo(json.dumps(app, indent=2))
        return
    from rich.table import Table

    from conveyor.cli.output import print_table

    pending = (
        f" (revision {app['latest_revision']} waits for `conveyor restart {name}`)"
        if app["latest_revision"] > app["revision"]
        else ""
    )
    click.echo(f"{app['name']}: {app['state']}, {app['running']}/{app['instances']} running")
    click.echo(f"revision: {app['revision']}{pending}")
    if app.get("cause"):
        click.echo(f"crashed:  revision {app['failed_revision']}: {app['cause']}")
        for line in app["last_lines"][-10:]:
            click.echo(f"    {line}")
        if app["revision"] == 0:  # it never ran: starting that revision again would crash again
            click.echo(f"Fix the app and push it again, or `conveyor delete {name}`.")
    if app.get("canary"):
        for line in canary_text(name, app["canary"]):
            click.echo(line)
    click.echo(f"routes:   {', '.join(app['routes']) or '-'}")
    if app.get("autoscaling"):
        click.echo(f"autoscaling: {app['autoscaling']}")
    load = app.get("load")
    if load and (load["ongoing"] or load["rate"]):
        p95 = "-" if load["p95_ms"] is None else f"{load['p95_ms']:.0f} ms"
        click.echo(
            f"load:     {load['ongoing']} request(s) in progress; last 30 s: "
            f"{load['rate']:.1f} requests/s, p95 {p95}"
        )
    table = Table("#", "rev", "state", "since", "cpu", "memory", "restarts", "port", box=None)
    for i in app["instances_detail"]:
        state = i["state"] if i["ready"] or i["state"] != "RUNNING" else "RUNNING (not ready)"
        table.add_row(
            str(i["index"]),
            str(i["revision"]),
            state,
            _ago(i["since"]),
            "-" if i["cpu"] is None else f"{i['cpu']:.1f}s",
            mib(i["memory"]),
            str(i["restarts"]),
            str(i["port"] or "-"),
        )
    print_table(table)
    click.echo(_isolation_line(app["instances_detail"]))
    if spare := app.get("warm_spare"):
        loaded = "model loaded" if spare["ready"] else "loading its model"
        click.echo(
            f"warm spare: pid {spare['pid']}, {mib(spare['memory'])} resident, {loaded} "
            "(also while scaled to zero; CONVEYOR_PREFORK=0 turns spares off)"
        )
    crashed = [i for i in app["instances_detail"] if i["last_crash"]]
    for i in crashed:
        crash = i["last_crash"]
        click.echo(f"last crash of instance {i['index']}: {crash['reason']}")
        for line in crash.get("last_lines", [])[-5:]:
            click.echo(f"    {line}")
    if app["events"]:
        click.echo("recent events:")
        for e in app["events"]:
            click.echo("  " + _event_line(e))


def _isolation_line(instances: list[dict[str, Any]]) -> str:
    """``isolation: namespaces+uid 3141592, memory cgroup v1 100 MiB``; per instance if mixed."""
    seen = [(i["index"], i.get("isolation")) for i in instances if i.get("isolation")]
    if not seen:
        return "isolation: -"
    if len({text for _, text in seen}) == 1:
        return f"isolation: {seen[0][1]}"
    return "isolation: " + "; ".join(f"#{index} {text}" for index, text in seen)


def _event_line(e: dict[str, Any]) -> str:
    where = "" if e["instance"] is None or e["instance"] < 0 else f" #{e['instance']}"
    details = " ".join(f"{k}={v}" for k, v in e["details"].items() if k != "last_lines")
    if e["details"].get("by") == "autoscaler":  # scaled 2 -> 4: ongoing requests ...
        d = e["details"]
        details = f"{d.get('previous')} -> {d.get('instances')}: {d.get('reason')}"
    return f"{when(e['at'])}  {e['kind']}{where}  {details}".rstrip()


@click.command("logs")
@app_argument
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--recent", default=100, show_default=True, type=click.IntRange(0, 100_000))
@target_option
def logs_command(name: str, follow: bool, recent: int, target: str) -> None:
    """Recent output of every instance ([index/stream] text), then new lines with -f."""
    if target != "local":
        from conveyor.cli.kubernetes import logs_on

        logs_on(target, name, recent, follow=follow)

        return
    path = f"/v1/apps/{name}/logs?recent={recent}&follow={'true' if follow else 'false'}"
    client = connect(timeout=None if follow else 60)
    try:
        for line in client.stream("GET", path):
            where = "platform" if line["index"] < 0 else f"{line['index']}/{line['stream']}"
            click.echo(f"{when(line['at'])} [{where}] {line['text']}")
    except KeyboardInterrupt:
        pass


@click.command("events")
@app_argument
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@target_option
def events_command(name: str, limit: int, target: str) -> None:
    """What happened to the app: pushes, stagings, starts, crashes, scaling ..."""
    if target != "local":
        from conveyor.cli.kubernetes import events_on

        events_on(target, name, limit)

        return
    for e in connect().call("GET", f"/v1/apps/{name}/events?limit={limit}"):
        click.echo(_event_line(e))


@click.command("revisions")
@app_argument
@target_option
def revisions_command(name: str, target: str) -> None:
    """The app's kept revisions; the deployed one is marked with *."""
    if target != "local":
        from conveyor.cli.kubernetes import revisions_on

        revisions_on(target, name)

        return
    for r in connect().call("GET", f"/v1/apps/{name}/revisions"):
        mark = "*" if r["deployed"] else " "
        env = f" env={','.join(r['env'])}" if r["env"] else ""
        services = f" services={','.join(r['services'])}" if r["services"] else ""
        canary = f"  (canary {r['canary']})" if r.get("canary") else ""
        click.echo(
            f"{mark} {r['number']:>3}  {when(r['created_at'])}  {r['description']}{env}{services}"
            + canary
        )
