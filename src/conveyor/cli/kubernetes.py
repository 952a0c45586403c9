"""``conveyor k8s render``: the Kubernetes objects of a manifest's apps, as YAML for GitOps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.client import connect, say
from conveyor.cli.uploads import manifest_apps, manifest_option
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.platform.spec import AppSpec

__all__ = ["k8s_group"]


@click.group("k8s")
def k8s_group() -> None:
    """Kubernetes targets: what they would apply."""


@k8s_group.command("render")
@click.argument("names", nargs=-1, metavar="[APP]...")
@click.option(
    "--target", "target", required=True, help="A Kubernetes target (conveyor target list)."
)
@manifest_option
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="APP=REF",
    help="The image an app (or the --stream) runs (default: REGISTRY/APP:latest); repeatable.",
)
@click.option(
    "--revision",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="The revision the objects are labelled with.",
)
@click.option("--stream", help="Render this stream's apps instead of the manifest's.")
@click.option("--binder", help="With --stream: the broker every pod reaches (kafka://...).")
def render_command(
    names: tuple[str, ...],
    target: str,
    manifest_path: Path | None,
    images: tuple[str, ...],
    revision: int,
    stream: str | None,
    binder: str | None,
) -> None:
    """Print the YAML a push to TARGET applies (Deployment, Service, routes, ...)."""
    from conveyor.platform.kubernetes import to_yaml

    chosen = parse_images(images)
    if stream is not None:
        body = {"binder": binder, "image": chosen.get(stream)}
        result = connect().call("POST", f"/v1/targets/{target}/streams/{stream}/render", body)
        click.echo(to_yaml(result["objects"]), nl=False)
        return
    apps = manifest_apps(names, manifest_path)
    specs = [a.to_json() for a in apps]
    result = connect().call(
        "POST",
        f"/v1/targets/{target}/render",
        {"specs": specs, "images": chosen, "revision": revision},
    )
    click.echo(to_yaml(result["objects"]), nl=False)


# -- the platform commands with --target T (T not local): apps on a Kubernetes target ------


def parse_images(images: tuple[str, ...]) -> dict[str, str]:
    """``--image APP=REF`` options as app -> image."""
    chosen: dict[str, str] = {}
    for item in images:
        app, sep, ref = item.partition("=")
        if not sep or not app or not ref:
            raise UsageError(f"--image {item!r} is not APP=IMAGE")
        chosen[app] = ref
    return chosen


def push_to(
    target: str, apps: list[AppSpec], instances: int | None, images: dict[str, str]
) -> None:
    """Upload, build (unless an image is given), apply and wait for each app's rollout."""
    from conveyor.cli.uploads import file_entries, push_body, upload

    client = connect()
    for app in apps:
        spec, local = push_body(app)
        image = images.get(app.name)
        if local and image is None:
            upload(client, local, app.name)
        body = {
            "spec": spec,
            "files": None if not local or image is not None else file_entries(local),
            "instances": app.instances if instances is None else instances,
            "image": image,
        }
        result = client.operation(
            f"/v1/targets/{target}/apps/{app.name}/push",
            body,
            echo=lambda m, n=app.name: say(f"{n}: {m}"),
        )
        click.echo(
            f"{app.name}: revision {result['revision']} rolled out on {target} with "
            f"{result['instances']} replica(s)"
        )


def list_on(target: str, as_json: bool) -> None:
    apps = connect().call("GET", f"/v1/targets/{target}/apps")
    if as_json:
        click.echo(json.dumps(apps, indent=2))
        return
    if not apps:
        click.echo(f"No apps on {target}. Push one with `conveyor push --target {target}`.")
    for a in apps:
        click.echo(f"{a['name']}  {a['ready']}/{a['instances']} ready  revision {a['revision']}")


def show_on(target: str, name: str, as_json: bool) -> None:
    app = connect().call("GET", f"/v1/targets/{target}/apps/{name}")
    if as_json:
        click.echo(json.dumps(app, indent=2))
        return
    pods = app["pods"]
    click.echo(f"{name} on {target}: {sum(p['ready'] for p in pods)}/{len(pods)} pods ready")
    for p in pods:
        state = "ready" if p["ready"] else "not ready"
        click.echo(
            f"  {p['pod']}  revision {p['revision']}  {p['phase']}  {state}  "
            f"restarts {p['restarts']}"
        )


def scale_on(target: str, name: str, instances: int) -> None:
    connect().call("POST", f"/v1/targets/{target}/apps/{name}/scale", {"instances": instances})
    click.echo(f"{name}: scaled to {instances} replica(s) on {target}")


def logs_on(target: str, name: str, recent: int, *, follow: bool) -> None:
    lines = max(recent, 1)
    path = f"/v1/targets/{target}/apps/{name}/logs?lines={lines}"
    if not follow:
        for line in connect().call("GET", path)["lines"]:
            click.echo(line)
        return
    try:
        for item in connect(timeout=None).stream("GET", path + "&follow=true"):
            click.echo(f"{item['pod']}: {item['text']}")
    except KeyboardInterrupt:
        pass


def delete_on(target: str, name: str) -> None:
    gone = connect().call("DELETE", f"/v1/targets/{target}/apps/{name}")
    click.echo(f"{name}: deleted from {target} ({', '.join(gone['kinds'])})")


def _operation_on(target: str, name: str, action: str, body: Any = None) -> dict[str, Any]:
    """A change rolled out on the target, its progress echoed; the result."""
    result: dict[str, Any] = connect().operation(
        f"/v1/targets/{target}/apps/{name}/{action}", body, echo=lambda m: say(f"{name}: {m}")
    )
    return result


def set_env_on(target: str, name: str, values: dict[str, str], unset: list[str]) -> None:
    """A new revision with the variables changed, rolled out now (no restart needed)."""
    result = _operation_on(target, name, "env", {"set": values, "unset": unset})
    verb, keys = ("sets", list(values)) if values else ("unsets", unset)
    click.echo(
        f"{name}: revision {result['revision']} {verb} {', '.join(keys)}, rolled out on {target}"
    )


def restart_on(target: str, name: str) -> None:
    result = _operation_on(target, name, "restart")
    click.echo(f"{name}: revision {result['revision']} restarted on {target} (every pod replaced)")


def rollback_on(target: str, name: str, revision: int | None) -> None:
    result = _operation_on(target, name, "rollback", {"revision": revision})
    click.echo(f"{name}: {result['message']} on {target}")


def revisions_on(target: str, name: str) -> None:
    for r in connect().call("GET", f"/v1/targets/{target}/apps/{name}/revisions"):
        mark = "*" if r["deployed"] else " "
        env = f" env={','.join(r['env'])}" if r["env"] else ""
        click.echo(f"{mark} {r['number']:>3}  {r['image']}  {r['description']}{env}")


def events_on(target: str, name: str, limit: int) -> None:
    from conveyor.cli.output import when

    for e in connect().call("GET", f"/v1/targets/{target}/apps/{name}/events?limit={limit}"):
        warning = " (Warning)" if e["type"] != "Normal" else ""
        times = f" x{e['count']}" if e["count"] > 1 else ""
        at = when(e["at"]) if e["at"] else "-"
        click.echo(f"{at}  {e['reason']}  {e['object']}  {e['message']}{warning}{times}")
