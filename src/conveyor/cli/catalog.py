"""``conveyor catalog ...``: the stream app catalogue (sources, processors, sinks; user functions).

The same commands ran as ``conveyor app list|info|register|unregister`` before;
``conveyor app`` (:mod:`.apps`) still hands those spellings here, with a note.
"""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.cli.client import connect
from conveyor.cli.uploads import file_entries, upload_folder

__all__ = ["catalog_group"]


@click.group("catalog")
def catalog_group() -> None:
    """The stream app catalogue: the sources, processors and sinks streams are made of."""


@catalog_group.command("list")
def list_command() -> None:
    """The apps streams are made of (sources, processors, sinks)."""
    for app in connect().call("GET", "/v1/stream-apps"):
        click.echo(f"{app['role']:<10} {app['name']:<15} {app['description']}")


@catalog_group.command("info")
@click.argument("app_name", metavar="STREAM-APP")
def info_command(app_name: str) -> None:
    """A stream app's options: type, default, what they do."""
    for app in connect().call("GET", f"/v1/stream-apps/{app_name}"):
        click.echo(f"{app['name']} ({app['role']}): {app['description']}")
        for o in app["options"]:
            default = "required" if o["required"] else f"default {o['default']!r}"
            choices = f" one of {', '.join(o['choices'])};" if o["choices"] else ""
            click.echo(
                f"  --{o['name']:<14} {o['type']:<10} {default};{choices} {o['description']}"
            )


@catalog_group.command("register")
@click.option("--name", required=True, help="The name streams use for it.")
@click.option("--uri", required=True, help="python:<module>:<function>")
@click.option(
    "--path",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder holding the module (uploaded; else it must be importable already).",
)
def register_command(name: str, uri: str, folder: Path | None) -> None:
    """Register a Python function as a stream app (a processor)."""
    client = connect()
    files = None
    if folder is not None:
        local = upload_folder(client, folder, name)
        files = file_entries(local)
    result = client.call("POST", "/v1/stream-apps", {"name": name, "uri": uri, "files": files})
    click.echo(f"app {name} registered: {result['uri']}")


@catalog_group.command("unregister")
@click.argument("app_name", metavar="STREAM-APP")
def unregister_command(app_name: str) -> None:
    """Forget a registered app (deployed streams keep running it)."""
    connect().call("DELETE", f"/v1/stream-apps/{app_name}")
    click.echo(f"app {app_name} unregistered")
