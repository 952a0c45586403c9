"""``conveyor k8s render``: the Kubernetes objects of a manifest's apps, as YAML for GitOps."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.cli.client import connect
from conveyor.cli.platform import manifest_apps, manifest_option
from conveyor.errors import UsageError

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
    help="The image an app runs (default: REGISTRY/APP:latest); repeatable.",
)
def render_command(
    names: tuple[str, ...], target: str, manifest_path: Path | None, images: tuple[str, ...]
) -> None:
    """Print the YAML a push to TARGET applies (Deployment, Service, routes, ...)."""
    from conveyor.platform.kubernetes import to_yaml

    chosen: dict[str, str] = {}
    for item in images:
        app, sep, ref = item.partition("=")
        if not sep or not app or not ref:
            raise UsageError(f"--image {item!r} is not APP=IMAGE")
        chosen[app] = ref
    apps = manifest_apps(names, manifest_path)
    specs = [a.to_json() for a in apps]
    result = connect().call(
        "POST", f"/v1/targets/{target}/render", {"specs": specs, "images": chosen}
    )
    click.echo(to_yaml(result["objects"]), nl=False)
