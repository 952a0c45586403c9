"""``conveyor image build``: an app's running revision as an OCI image in a registry;
``conveyor image runtime``: the image with Conveyor installed that model and stream apps and
Conveyor's task steps run on."""

from __future__ import annotations

import click

from conveyor.cli.client import connect, say

__all__ = ["image_group"]


@click.group("image")
def image_group() -> None:
    """Build apps, and the runtime image they run Conveyor from, into OCI images (no Docker
    daemon needed) and push them to a registry."""


@image_group.command("build")
@click.argument("name", metavar="APP")
@click.option(
    "--registry",
    required=True,
    metavar="HOST/PATH",
    help="Where to push: the image goes to HOST/PATH/APP (e.g. registry.example.com/ds).",
)
@click.option(
    "--base",
    metavar="IMAGE",
    help="The base image, with Python [default: python:X.Y-slim of the app's Python].",
)
@click.option("--tag", help="Also tag the image (it is always pinned by digest).")
@click.option(
    "--insecure", is_flag=True, help="Plain HTTP (implied for a registry on a loopback address)."
)
def build_command(
    name: str, registry: str, base: str | None, tag: str | None, insecure: bool
) -> None:
    """Build APP's running revision into an image on a base image and push it.

    Prints the image pinned by digest (REGISTRY/APP@sha256:...). An image that
    is already in the registry is not pushed again.
    """
    body = {"registry": registry, "base": base, "tag": tag, "insecure": insecure}
    result = connect().operation(f"/v1/apps/{name}/image", body, echo=lambda m: say(f"{name}: {m}"))
    click.echo(result["pinned"])


@image_group.command("runtime")
@click.option(
    "--registry",
    required=True,
    metavar="HOST/PATH",
    help="Where to push: the image goes to HOST/PATH/conveyor-runtime.",
)
@click.option(
    "--base",
    metavar="IMAGE",
    help="The base image, with the server's Python [default: python:X.Y-slim of it].",
)
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="Conveyor's extras to carry (repeatable) [default: sklearn, s3, kafka, nats, redis, "
    "rabbitmq].",
)
@click.option(
    "--insecure", is_flag=True, help="Plain HTTP (implied for a registry on a loopback address)."
)
def runtime_command(
    registry: str, base: str | None, extras: tuple[str, ...], insecure: bool
) -> None:
    """Build the runtime image: the base with the Conveyor the server runs and its packages.

    The packages are copied from the server's own environment at their installed
    versions, so the base must have the server's Python and platform. Prints the
    image pinned by digest (REGISTRY/conveyor-runtime@sha256:...); an image that is
    already in the registry is not pushed again. A Kubernetes target without
    --runtime-image builds and uses this image by itself.
    """
    body = {
        "registry": registry,
        "base": base,
        "extras": list(extras) or None,
        "insecure": insecure,
    }
    result = connect().operation("/v1/images/runtime", body, echo=lambda m: say(f"runtime: {m}"))
    click.echo(result["pinned"])
