"""Commands that change apps: ``push``, ``scale``, ``set-env``, ``restart``, ``rollback`` ...

Each talks to the control API only (:mod:`.client`), or with ``--target`` to
a Kubernetes target (:mod:`.kubernetes`); reading apps is :mod:`.apps`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from conveyor.cli.canary import canary_options, canary_policy
from conveyor.cli.client import connect, say
from conveyor.cli.output import mib
from conveyor.cli.uploads import file_entries, manifest_apps, manifest_option, push_body, upload
from conveyor.errors import UsageError

__all__ = [
    "app_argument",
    "delete_command",
    "droplets_group",
    "push_command",
    "restage_command",
    "restart_command",
    "restart_note",
    "rollback_command",
    "scale_command",
    "set_env_command",
    "start_command",
    "stop_command",
    "target_option",
    "unset_env_command",
]

#: ``APP``: the app a command is about.
app_argument = click.argument("name", metavar="APP")
#: ``--target T``: run the command against a Kubernetes target instead of this machine.
target_option = click.option(
    "--target",
    default="local",
    show_default=True,
    help="Where: `local` or a Kubernetes target (conveyor target list).",
)


def restart_note(name: str) -> str:
    """What a configuration change's message ends with: it waits for a restart."""
    return f"; `conveyor restart {name}` runs it"


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
            "files": None if not local else file_entries(local),
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


@click.command("scale")
@app_argument
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


@click.command("set-env")
@app_argument
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
    click.echo(f"{name}: revision {result['revision']} sets {key}" + restart_note(name))


@click.command("unset-env")
@app_argument
@click.argument("key")
@target_option
def unset_env_command(name: str, key: str, target: str) -> None:
    """Remove a variable; it takes effect at the next `conveyor restart` (on a target: now)."""
    if target != "local":
        from conveyor.cli.kubernetes import set_env_on

        set_env_on(target, name, {}, [key])

        return
    result = connect().call("POST", f"/v1/apps/{name}/env", {"unset": [key]})
    click.echo(f"{name}: revision {result['revision']} unsets {key}" + restart_note(name))


def _operation(name: str, action: str, body: Any = None) -> None:
    result = connect().operation(
        f"/v1/apps/{name}/{action}", body, echo=lambda m: say(f"{name}: {m}")
    )
    click.echo(f"{name}: {result['message']}")


@click.command("restart")
@app_argument
@target_option
def restart_command(name: str, target: str) -> None:
    """Roll every instance onto the newest revision, without downtime."""
    if target != "local":
        from conveyor.cli.kubernetes import restart_on

        restart_on(target, name)

        return
    _operation(name, "restart")


@click.command("restage")
@app_argument
def restage_command(name: str) -> None:
    """Rebuild the droplet from the pushed source and roll onto it."""
    _operation(name, "restage")


@click.command("start")
@app_argument
def start_command(name: str) -> None:
    """Start a stopped app."""
    _operation(name, "start")


@click.command("stop")
@app_argument
def stop_command(name: str) -> None:
    """Stop every instance of an app (it stays, with its revisions)."""
    result = connect().call("POST", f"/v1/apps/{name}/stop")
    click.echo(f"{name}: {result['message']}")


@click.command("delete")
@app_argument
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


@click.command("rollback")
@app_argument
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
    click.echo(f"{verb} {len(result['removed'])} folder(s), {mib(result['bytes'])}")
