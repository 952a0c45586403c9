"""``conveyor stream ...``: create, deploy, update, inspect and remove streams.

Every command talks to the control API; the apps streams are made of are in
the catalogue (:mod:`.catalog`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from conveyor.cli.client import connect, say
from conveyor.cli.output import when
from conveyor.errors import UsageError

__all__ = ["stream_group"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _named(command: _F) -> _F:
    """The stream's name, as ``STREAM`` or as SCDF's shell writes it, ``--name STREAM``."""

    @functools.wraps(command)
    def named(*args: Any, positional: str | None, option: str | None, **kwargs: Any) -> Any:
        if positional is None and option is None:
            raise click.UsageError("name the stream: STREAM or --name STREAM")
        if positional is not None and option is not None and positional != option:
            raise click.UsageError(
                f"the stream is named twice, {positional!r} and --name {option!r}; give one"
            )
        return command(*args, name=positional or option, **kwargs)

    named = click.argument("positional", metavar="[STREAM]", required=False)(named)
    option = click.option(
        "--name", "option", metavar="STREAM", help="The stream, as SCDF's shell names it."
    )
    return cast(_F, option(named))


_PROPERTIES = click.option(
    "--properties",
    default="",
    metavar="K=V,...",
    help="deployer.<app>.count=N, deployer.<app>.memory=512M, app.<app>.<option>=<value>",
)


def _properties(text: str) -> dict[str, str]:
    from conveyor.streams.plan import parse_properties

    return parse_properties(text)


@click.group("stream")
def stream_group() -> None:
    """Streams: pipelines in the Unix-pipe DSL, each app a platform app."""


@stream_group.command("create")
@_named
@click.option(
    "--definition", required=True, help="e.g. \"http | filter --expression='x > 0' | log\""
)
@click.option("--deploy", is_flag=True, help="Deploy it at once.")
@_PROPERTIES
def create_command(name: str, definition: str, deploy: bool, properties: str) -> None:
    """Create a stream from a definition (checked, not yet deployed)."""
    props = _properties(properties)
    created = connect().call("POST", "/v1/streams", {"name": name, "definition": definition})
    click.echo(f"stream {name} created: {', '.join(a['name'] for a in created['apps'])}")
    if deploy:
        _deploy(name, props, None)


@stream_group.command("validate")
@_named
@click.option("--definition", help="Check this definition instead of the stored one.")
def validate_command(name: str, definition: str | None) -> None:
    """Parse a definition and check every app and option; list the apps it makes."""
    client = connect()
    if definition is None:
        definition = client.call("GET", f"/v1/streams/{name}")["definition"]
    result = client.call("POST", "/v1/streams/validate", {"name": name, "definition": definition})
    click.echo(f"{name}: valid")
    for app in result["apps"]:
        options = " ".join(f"--{k}={v}" for k, v in app["options"].items())
        wiring = f"{app['input'] or '-'} → {app['output'] or '-'}"
        click.echo(f"  {app['name']:<24} {app['app']:<14} {wiring}  {options}".rstrip())


def _deploy(name: str, properties: dict[str, str], binder: str | None) -> None:
    result = connect().operation(
        f"/v1/streams/{name}/deploy",
        {"properties": properties, "binder": binder},
        echo=lambda m: say(f"{name}: {m}"),
    )
    click.echo(f"stream {name} deployed (version {result['version']}): {', '.join(result['apps'])}")


@stream_group.command("deploy")
@_named
@_PROPERTIES
@click.option("--binder", help="embedded (default), redis://host:6379/0 or amqp://user:pw@host/")
@click.option("--target", default="local", show_default=True, help="Or a Kubernetes target.")
@click.option(
    "--image",
    help="With --target: an image with Conveyor installed (default: the target's runtime image).",
)
def deploy_command(
    name: str, properties: str, binder: str | None, target: str, image: str | None
) -> None:
    """Deploy a stream: one platform app per stream app (one Deployment each on a cluster)."""
    if target == "local":
        if image is not None:
            raise UsageError("--image is for a Kubernetes target: add --target NAME")
        _deploy(name, _properties(properties), binder)
        return
    body = {"properties": _properties(properties), "binder": binder, "image": image}
    result = connect().operation(
        f"/v1/targets/{target}/streams/{name}/deploy", body, echo=lambda m: say(f"{name}: {m}")
    )
    click.echo(f"stream {name} deployed on {target}: {', '.join(result['apps'])}")


@stream_group.command("update")
@_named
@_PROPERTIES
def update_command(name: str, properties: str) -> None:
    """Redeploy with changed properties; new instances start before old ones stop."""
    result = connect().operation(
        f"/v1/streams/{name}/update",
        {"properties": _properties(properties)},
        echo=lambda m: say(f"{name}: {m}"),
    )
    click.echo(f"stream {name} updated (version {result['version']})")


@stream_group.command("rollback")
@_named
@click.option("--revision", "version", required=True, type=click.IntRange(1))
def rollback_command(name: str, version: int) -> None:
    """Redeploy a former version of the stream."""
    result = connect().operation(
        f"/v1/streams/{name}/rollback", {"version": version}, echo=lambda m: say(f"{name}: {m}")
    )
    click.echo(f"stream {name} rolled back to {version} (now version {result['version']})")


@stream_group.command("undeploy")
@_named
@click.option("--target", default="local", show_default=True, help="Or a Kubernetes target.")
def undeploy_command(name: str, target: str) -> None:
    """Stop and remove the stream's apps (the definition stays)."""
    if target != "local":
        gone = connect().call("DELETE", f"/v1/targets/{target}/streams/{name}")
        click.echo(f"stream {name} undeployed from {target}: {', '.join(gone['removed'])}")
        return
    result = connect().call("POST", f"/v1/streams/{name}/undeploy")
    click.echo(f"stream {name} undeployed ({len(result['removed'])} apps removed)")


@stream_group.command("destroy")
@_named
def destroy_command(name: str) -> None:
    """Undeploy the stream and forget it."""
    connect().call("DELETE", f"/v1/streams/{name}")
    click.echo(f"stream {name} destroyed")


@stream_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json: bool) -> None:
    """Every stream: status and definition."""
    streams = connect().call("GET", "/v1/streams")
    if as_json:
        click.echo(json.dumps(streams, indent=2))
        return
    if not streams:
        click.echo("No streams. Create one with `conveyor stream create NAME --definition ...`.")
    for s in streams:
        click.echo(f"{s['name']:<20} {s['status']:<11} {s['definition']}")


@stream_group.command("info")
@_named
@click.option("--json", "as_json", is_flag=True)
@click.option("--target", default="local", show_default=True, help="Or a Kubernetes target.")
def info_command(name: str, as_json: bool, target: str) -> None:
    """A stream's apps: instances running/desired, wiring, messages waiting (lag) and counts.

    The counts are since the app's instances started (shown beside them): a
    restart or an update starts them again at zero. On a target: each app's
    Deployment, its replicas ready and its revision.
    """
    path = f"/v1/streams/{name}" if target == "local" else f"/v1/targets/{target}/streams/{name}"
    info: dict[str, Any] = connect().call("GET", path)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if target != "local":
        click.echo(f"{name} on {target}: {len(info['apps'])} app(s)")
        for app in info["apps"]:
            click.echo(
                f"  {app['name']:<24} {app['ready']}/{app['instances']} ready"
                f"  revision {app['revision']}"
            )
        return
    binder = info.get("binder") or "-"
    click.echo(f"{info['name']}: {info['status']} (version {info['version']}, binder {binder})")
    click.echo(f"  {info['definition']}")
    for app in info["apps"]:
        lag = "-" if app["lag"] is None else str(app["lag"])
        wiring = f"{app['input'] or '-'} → {app['output'] or '-'}"
        since = app.get("counted_since")
        counted = f" (since {when(since)})" if since else ""
        click.echo(
            f"  {app['name']:<24} {app['state']:<9} {app['running']}/{app['instances']}"
            f"  {wiring}  lag {lag}  in {app['received']} out {app['published']} "
            f"dlq {app['dead_lettered']}{counted}  {app['published_per_second']}/s"
        )


@stream_group.command("history")
@_named
def history_command(name: str) -> None:
    """Every deployment of the stream; the running one is marked with *."""
    for v in connect().call("GET", f"/v1/streams/{name}/history"):
        mark = "*" if v["deployed"] else " "
        props = ",".join(f"{k}={p}" for k, p in v["properties"].items()) or "-"
        at = when(v["created_at"])
        click.echo(f"{mark} {v['version']:>3}  {at}  {v['description']:<14} {props}")
