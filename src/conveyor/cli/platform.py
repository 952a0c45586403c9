"""Platform commands: ``up``/``down``/``status``, ``push``, ``apps``, ``app``, ``scale`` ...

Every command but ``server`` talks to the control API only (:mod:`.client`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from conveyor.cli.canary import canary_options, canary_policy, canary_text
from conveyor.cli.client import connect, say
from conveyor.cli.output import when
from conveyor.cli.uploads import manifest_apps, manifest_option, push_body, upload, upload_folder
from conveyor.errors import UsageError

__all__ = [
    "app_command",
    "app_info_command",
    "app_list_command",
    "app_register_command",
    "app_unregister_command",
    "apps_command",
    "push_command",
]

_NAME = click.argument("name", metavar="APP")
#: ``--target T``: run the command against a Kubernetes target instead of this machine.
target_option = click.option(
    "--target",
    default="local",
    show_default=True,
    help="Where: `local` or a Kubernetes target (conveyor target list).",
)
_RESTART = "; `conveyor restart {}` runs it"


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / (1024 * 1024):.0f}M"


# -- push -----------------------------------------------------------------------------


@click.command("push")
@click.argument("names", nargs=-1, metavar="[APP]...")
@manifest_option
@click.option("-i", "--instances", type=click.IntRange(0, 64), help="Override the manifest.")
@target_option
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="APP=REF",
    help="With --target: run this image (built elsewhere) instead of building one.",
)
@canary_options
def push_command(
    names: tuple[str, ...],
    manifest_path: Path | None,
    instances: int | None,
    target: str,
    images: tuple[str, ...],
    **canary: Any,
) -> None:
    """Push the apps of a manifest: upload, stage, and deploy (rolling if running).

    With --canary PERCENT the new revision runs beside the current one and gets
    PERCENT % of the requests until `conveyor canary APP promote` (or abort).
    """
    policy = canary_policy(canary)
    apps = manifest_apps(names, manifest_path)
    if target != "local":
        if policy is not None:
            raise UsageError("--canary is for the local target; a cluster rolls out the revision")
        from conveyor.cli.kubernetes import parse_images, push_to

        push_to(target, apps, instances, parse_images(images))
        return
    if images:
        raise UsageError("--image is for a Kubernetes target: add --target NAME")
    client = connect()
    info = client.call("GET", "/v1/info")
    for app in apps:
        spec, local = push_body(app)
        if local:
            upload(client, local, app.name)
        body = {
            "spec": spec,
            "files": None
            if not local
            else {rel: {"digest": d, "mode": mode} for rel, (_, d, mode) in local.items()},
            "instances": app.instances if instances is None else instances,
            "canary": policy,
        }
        result = client.operation(
            f"/v1/apps/{app.name}/push", body, echo=lambda m, n=app.name: say(f"{n}: {m}")
        )
        where = f"{info['router']}/{app.name}" if spec["routes"] is None else ""
        if policy is not None:
            click.echo(f"{app.name}: {result['message']}{'  ' + where if where else ''}")
            continue
        click.echo(
            f"{app.name}: revision {result['revision']} running with "
            f"{result['instances']} instance(s){'  ' + where if where else ''}"
        )


# -- apps -----------------------------------------------------------------------------


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
        if args and args[0] in _CATALOGUE:
            verb = args[0]
            click.echo(
                f"Note: `conveyor app {verb}` is deprecated and will show the app named "
                f"{verb!r} in the next release; use `conveyor catalog {verb}` "
                f"(and `conveyor app show {verb}` for an app of that name).",
                err=True,
            )
            return verb, _CATALOGUE[verb], args[1:]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "show", self.commands["show"], args
        return super().resolve_command(ctx, args)


@click.group("app", cls=_AppGroup, subcommand_metavar="NAME | show NAME")
def app_command() -> None:
    """A platform app: `conveyor app NAME`, or `conveyor app show NAME` for any name."""


@click.command("list")
def app_list_command() -> None:
    """The apps streams are made of (sources, processors, sinks)."""
    for app in connect().call("GET", "/v1/stream-apps"):
        click.echo(f"{app['role']:<10} {app['name']:<15} {app['description']}")


@click.command("info")
@click.argument("app_name", metavar="STREAM-APP")
def app_info_command(app_name: str) -> None:
    """A stream app's options: type, default, what they do."""
    for app in connect().call("GET", f"/v1/stream-apps/{app_name}"):
        click.echo(f"{app['name']} ({app['role']}): {app['description']}")
        for o in app["options"]:
            default = "required" if o["required"] else f"default {o['default']!r}"
            choices = f" one of {', '.join(o['choices'])};" if o["choices"] else ""
            click.echo(
                f"  --{o['name']:<14} {o['type']:<10} {default};{choices} {o['description']}"
            )


@click.command("register")
@click.option("--name", required=True, help="The name streams use for it.")
@click.option("--uri", required=True, help="python:<module>:<function>")
@click.option(
    "--path",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder holding the module (uploaded; else it must be importable already).",
)
def app_register_command(name: str, uri: str, folder: Path | None) -> None:
    """Register a Python function as a stream app (a processor)."""
    client = connect()
    files = None
    if folder is not None:
        local = upload_folder(client, folder, name)
        files = {rel: {"digest": d, "mode": mode} for rel, (_, d, mode) in local.items()}
    result = client.call("POST", "/v1/stream-apps", {"name": name, "uri": uri, "files": files})
    click.echo(f"app {name} registered: {result['uri']}")


@click.command("unregister")
@click.argument("app_name", metavar="STREAM-APP")
def app_unregister_command(app_name: str) -> None:
    """Forget a registered app (deployed streams keep running it)."""
    connect().call("DELETE", f"/v1/stream-apps/{app_name}")
    click.echo(f"app {app_name} unregistered")


#: The stream app catalogue's commands (``conveyor catalog ...``; ``conveyor app ...`` before).
_CATALOGUE: dict[str, click.Command] = {
    "list": app_list_command,
    "info": app_info_command,
    "register": app_register_command,
    "unregister": app_unregister_command,
}


@app_command.command("show")
@_NAME
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
            _mib(i["memory"]),
            str(i["restarts"]),
            str(i["port"] or "-"),
        )
    print_table(table)
    click.echo(_isolation_line(app["instances_detail"]))
    if spare := app.get("warm_spare"):
        loaded = "model loaded" if spare["ready"] else "loading its model"
        click.echo(
            f"warm spare: pid {spare['pid']}, {_mib(spare['memory'])} resident, {loaded} "
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


@click.command("scale")
@_NAME
@click.option("-i", "--instances", required=True, type=click.IntRange(0, 64))
@target_option
def scale_command(name: str, instances: int, target: str) -> None:
    """Change how many instances run."""
    if target != "local":
        from conveyor.cli.kubernetes import scale_on

        scale_on(target, name, instances)

        return
    result = connect().call("POST", f"/v1/apps/{name}/scale", {"instances": instances})
    click.echo(f"{name}: {result['message']}")


@click.command("logs")
@_NAME
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
@_NAME
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


@click.command("set-env")
@_NAME
@click.argument("key")
@click.argument("value")
@click.option(
    "--secret",
    is_flag=True,
    help="Keep the value sealed in the registry (names holding PASSWORD, SECRET, TOKEN, KEY "
    "... always are).",
)
@target_option
def set_env_command(name: str, key: str, value: str, secret: bool, target: str) -> None:
    """Set a variable; it takes effect at the next `conveyor restart` (on a target: now)."""
    if target != "local":
        if secret:
            raise UsageError(
                "--secret seals a value in this platform's registry; a target's Deployment "
                "holds plain env: keep a secret in a Kubernetes Secret instead"
            )
        from conveyor.cli.kubernetes import set_env_on

        set_env_on(target, name, {key: value}, [])

        return
    body = {"set": {key: value}, "secret": secret}
    result = connect().call("POST", f"/v1/apps/{name}/env", body)
    click.echo(f"{name}: revision {result['revision']} sets {key}" + _RESTART.format(name))


@click.command("unset-env")
@_NAME
@click.argument("key")
@target_option
def unset_env_command(name: str, key: str, target: str) -> None:
    """Remove a variable; it takes effect at the next `conveyor restart` (on a target: now)."""
    if target != "local":
        from conveyor.cli.kubernetes import set_env_on

        set_env_on(target, name, {}, [key])

        return
    result = connect().call("POST", f"/v1/apps/{name}/env", {"unset": [key]})
    click.echo(f"{name}: revision {result['revision']} unsets {key}" + _RESTART.format(name))


def _operation(name: str, action: str, body: Any = None) -> None:
    result = connect().operation(
        f"/v1/apps/{name}/{action}", body, echo=lambda m: say(f"{name}: {m}")
    )
    click.echo(f"{name}: {result['message']}")


@click.command("restart")
@_NAME
@target_option
def restart_command(name: str, target: str) -> None:
    """Roll every instance onto the newest revision, without downtime."""
    if target != "local":
        from conveyor.cli.kubernetes import restart_on

        restart_on(target, name)

        return
    _operation(name, "restart")


@click.command("restage")
@_NAME
def restage_command(name: str) -> None:
    """Rebuild the droplet from the pushed source and roll onto it."""
    _operation(name, "restage")


@click.command("start")
@_NAME
def start_command(name: str) -> None:
    """Start a stopped app."""
    _operation(name, "start")


@click.command("stop")
@_NAME
def stop_command(name: str) -> None:
    """Stop every instance of an app (it stays, with its revisions)."""
    result = connect().call("POST", f"/v1/apps/{name}/stop")
    click.echo(f"{name}: {result['message']}")


@click.command("delete")
@_NAME
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@target_option
def delete_command(name: str, yes: bool, target: str) -> None:
    """Stop an app and remove it with its revisions and events."""
    if target != "local":
        if not yes:
            click.confirm(f"Delete app {name!r} from {target}?", abort=True, err=True)
        from conveyor.cli.kubernetes import delete_on

        delete_on(target, name)

        return
    if not yes:
        click.confirm(f"Delete app {name!r} and its revisions?", abort=True, err=True)
    connect().call("DELETE", f"/v1/apps/{name}")
    click.echo(f"{name}: deleted")


@click.command("revisions")
@_NAME
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


@click.command("rollback")
@_NAME
@click.option(
    "--revision",
    "--to",
    type=click.IntRange(1),
    help="The revision to run (on a target, default: the one before the running one).",
)
@target_option
def rollback_command(name: str, revision: int | None, target: str) -> None:
    """Run a kept revision again (as a new revision), without downtime."""
    if target != "local":
        from conveyor.cli.kubernetes import rollback_on

        rollback_on(target, name, revision)

        return
    if revision is None:
        raise UsageError("give the revision to run: --revision N (see `conveyor revisions APP`)")
    _operation(name, "rollback", {"revision": revision})


@click.group("droplets")
def droplets_group() -> None:
    """The platform's staged environments and unpacked sources."""


@droplets_group.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--min-age",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a droplet must be old (a push in progress has made one not yet recorded).",
)
def droplets_gc_command(dry_run: bool, min_age: float) -> None:
    """Remove droplets no kept revision or registered app uses."""
    flag = "true" if dry_run else "false"
    result = connect().call("POST", f"/v1/droplets/gc?dry_run={flag}&min_age={min_age}")
    verb = "would remove" if dry_run else "removed"
    for path in result["removed"]:
        click.echo(f"{verb} {path}")
    click.echo(f"{verb} {len(result['removed'])} folder(s), {_mib(result['bytes'])}")
