"""``conveyor runs tag|untag|delete|restore``: what a user changes on a recorded run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from conveyor.store.registry import Registry

__all__ = ["add_commands", "parse_tags"]


def _registry() -> Registry:
    from conveyor.config import get_settings
    from conveyor.store.registry import Registry

    return Registry.from_settings(get_settings())


def parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("stage=prod", "owner=ana")`` -> dict; a pair without ``=`` is a UsageError."""
    from conveyor.errors import UsageError

    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"tag {pair!r} is not KEY=VALUE", hint="Example: stage=prod")
        tags[key.strip()] = value
    return tags


@click.command("tag")
@click.argument("run_id")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
def tag_command(run_id: str, tags: tuple[str, ...]) -> None:
    """Set tags on RUN_ID (a tag already there takes the new value)."""
    wanted = parse_tags(tags)
    with _registry() as registry:
        full = registry.set_tags(run_id, wanted)
        now = registry.get_run(full).tags
    click.echo(f"Run {full[:12]} tags: " + " ".join(f"{k}={v}" for k, v in now.items()))


@click.command("untag")
@click.argument("run_id")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def untag_command(run_id: str, keys: tuple[str, ...]) -> None:
    """Remove tags from RUN_ID."""
    with _registry() as registry:
        full = registry.remove_tags(run_id, list(keys))
        now = registry.get_run(full).tags
    shown = " ".join(f"{k}={v}" for k, v in now.items()) or "(none)"
    click.echo(f"Run {full[:12]} tags: {shown}")


@click.command("delete")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
def delete_command(run_ids: tuple[str, ...]) -> None:
    """Delete runs: hidden from listings, restorable until the next `conveyor artifacts gc`."""
    with _registry() as registry:
        for run_id in run_ids:
            full = registry.delete_run(run_id)
            click.echo(
                f"Deleted run {full[:12]} (restore it with: conveyor runs restore {full[:12]}; "
                "`conveyor artifacts gc` removes it for good)"
            )


@click.command("restore")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
def restore_command(run_ids: tuple[str, ...]) -> None:
    """Bring deleted runs back into listings."""
    with _registry() as registry:
        for run_id in run_ids:
            full = registry.delete_run(run_id, restore=True)
            click.echo(f"Restored run {full[:12]}")


def add_commands(group: click.Group) -> None:
    for command in (tag_command, untag_command, delete_command, restore_command):
        group.add_command(command)
