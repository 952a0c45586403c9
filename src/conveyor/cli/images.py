"""``conveyor image build``: an app's running revision as an OCI image in a registry."""

from __future__ import annotations

import click

from conveyor.cli.client import connect, say

__all__ = ["image_group"]


@click.group("image")
def image_group() -> None:
    """Build apps into OCI images (no Docker daemon needed) and push them to a registry."""


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
