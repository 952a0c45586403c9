"""``conveyor models``: the model registry (register, alias, list, show, versions, tag).

The registry lives in the registry database beside the runs, so these
commands read and write it directly, as ``conveyor runs`` does; the platform
serves the same through ``/v1/models``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["models_group"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group("models")
def models_group() -> None:
    """Named models with immutable versions and aliases that move (models:/NAME@ALIAS).

    \b
    Examples:
      conveyor models register run:3f2a9c/model --name diagnosis
      conveyor models alias diagnosis champion 1
      conveyor serve models:/diagnosis@champion
    """


@models_group.command("register")
@click.argument("source", metavar="SOURCE")
@click.option("--name", "-n", required=True, help="The registered model's name.")
@click.option("--description", "-d", default=None, help="What the model is for.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
def register_command(source: str, name: str, description: str | None, as_json: bool) -> None:
    """Register SOURCE as a new version of NAME and print its number.

    SOURCE is a run's model (run:<run-id>/<model>) or a model file, which is
    stored in the artifact store. Registering the same artifact again prints
    the version it already has.
    """
    from conveyor.config import get_settings
    from conveyor.repro.registered import register_run_model
    from conveyor.store.registry import Registry

    settings = get_settings()
    with Registry.from_settings(settings) as registry:
        if source.startswith("run:"):
            version, created = register_run_model(registry, source, name, description=description)
        else:
            version, created = _register_file(registry, Path(source), name, description)
    if as_json:
        click.echo(json.dumps({**version.to_json(), "created": created}, indent=2))
        return
    if created:
        click.echo(f"Registered {name} version {version.version} ({version.digest[:19]}).")
    else:
        click.echo(
            f"{source} is already {name} version {version.version} ({version.digest[:19]}); "
            "nothing new registered."
        )
    click.echo(f"Serve it with: conveyor serve models:/{name}/{version.version}")


def _register_file(registry: Any, path: Path, name: str, description: str | None) -> Any:
    """Store a model file from elsewhere and register it (its types are trusted by no one)."""
    from conveyor.config import get_settings
    from conveyor.errors import ModelError, NotFoundError, UntrustedModelError
    from conveyor.models import format_for
    from conveyor.serving.resolve import resolve_model_uri
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.models import ModelRepository

    if not path.is_file():
        raise NotFoundError(
            f"{path}: no such model file",
            hint="Give run:<run-id>/<model> or the path of a model file.",
        )
    fmt = format_for(path)
    signature: dict[str, Any] | None = None
    try:  # the signature, when the file loads without trusting anything
        signature = resolve_model_uri(str(path), get_settings()).model.signature.to_json()
    except UntrustedModelError:
        pass
    except ModelError as exc:
        raise ModelError(f"cannot register {path}: {exc.message}", hint=exc.hint) from exc
    digest = ArtifactStore.from_settings(get_settings()).put_file(path)
    return ModelRepository(registry).add_version(
        name,
        digest=digest,
        format=fmt.name,
        signature=signature,
        run_id=None,
        source=f"file:{path.name}",
        filename=path.name,
        description=description,
    )


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(1))
@click.option("--force", is_flag=True, help="Move it even to a version whose signature differs.")
def alias_command(name: str, alias: str, version: int, force: bool) -> None:
    """Point ALIAS of model NAME at VERSION (apps following the alias roll to it)."""
    from conveyor.config import get_settings
    from conveyor.repro.registered import move_alias
    from conveyor.store.registry import Registry

    with Registry.from_settings(get_settings()) as registry:
        before = move_alias(registry, name, alias, version, force=force)
    moved = "" if before is None or before == version else f" (was version {before})"
    click.echo(f"{name}@{alias} -> version {version}{moved}.")


@models_group.command("unalias")
@click.argument("name")
@click.argument("alias")
def unalias_command(name: str, alias: str) -> None:
    """Remove ALIAS from model NAME."""
    from conveyor.config import get_settings
    from conveyor.store.models import ModelRepository
    from conveyor.store.registry import Registry

    with Registry.from_settings(get_settings()) as registry:
        ModelRepository(registry).delete_alias(name, alias)
    click.echo(f"Removed alias {alias!r} of {name}.")


@models_group.command("tag")
@click.argument("name")
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove a tag. Repeatable.")
@click.option("--description", "-d", default=None, help="Replace the model's description.")
def tag_command(
    name: str, tags: tuple[str, ...], remove: tuple[str, ...], description: str | None
) -> None:
    """Set (or --remove) tags of model NAME, or change its --description."""
    from conveyor.config import get_settings
    from conveyor.errors import UsageError
    from conveyor.store.models import ModelRepository
    from conveyor.store.registry import Registry

    pairs: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"tag {tag!r} is not KEY=VALUE")
        pairs[key.strip()] = value
    with Registry.from_settings(get_settings()) as registry:
        model = ModelRepository(registry).update_model(
            name, description=description, set_tags=pairs, remove_tags=remove
        )
    shown = " ".join(f"{k}={v}" for k, v in sorted(model.tags.items())) or "(no tags)"
    click.echo(f"{name}: {shown}")


@models_group.command("list")
@_JSON
def list_command(as_json: bool) -> None:
    """The registered models, their latest version and aliases."""
    from conveyor.config import get_settings
    from conveyor.store.models import ModelRepository
    from conveyor.store.registry import Registry

    with Registry.from_settings(get_settings()) as registry:
        models = ModelRepository(registry).models()
    if as_json:
        click.echo(json.dumps([m.to_json() for m in models], indent=2))
        return
    if not models:
        click.echo(
            "No registered models. Register one with: conveyor models register "
            "run:<run-id>/<model> --name NAME"
        )
        return
    rows = [
        (
            m.name,
            str(m.latest_version or "-"),
            " ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items())),
            m.description,
        )
        for m in models
    ]
    _table(("NAME", "LATEST", "ALIASES", "DESCRIPTION"), rows)


@models_group.command("show")
@click.argument("name")
@_JSON
def show_command(name: str, as_json: bool) -> None:
    """One model: description, tags, aliases and versions."""
    from conveyor.config import get_settings
    from conveyor.store.models import ModelRepository
    from conveyor.store.registry import Registry

    with Registry.from_settings(get_settings()) as registry:
        repo = ModelRepository(registry)
        model = repo.model(name)
        versions = repo.versions(name)
    if as_json:
        data = {**model.to_json(), "versions": [v.to_json() for v in versions]}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"model:       {model.name}")
    click.echo(f"description: {model.description or '-'}")
    tags = " ".join(f"{k}={v}" for k, v in sorted(model.tags.items()))
    click.echo(f"tags:        {tags or '-'}")
    aliases = " ".join(f"{a}->{v}" for a, v in sorted(model.aliases.items()))
    click.echo(f"aliases:     {aliases or '-'}")
    click.echo(f"versions:    {len(versions)} (latest {model.latest_version})")
    _versions_table(versions)


@models_group.command("versions")
@click.argument("name")
@_JSON
def versions_command(name: str, as_json: bool) -> None:
    """Every version of model NAME: digest, format, source run and aliases."""
    from conveyor.config import get_settings
    from conveyor.store.models import ModelRepository
    from conveyor.store.registry import Registry

    with Registry.from_settings(get_settings()) as registry:
        versions = ModelRepository(registry).versions(name)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in versions], indent=2))
        return
    _versions_table(versions)


def _versions_table(versions: list[Any]) -> None:
    from conveyor.cli.output import when

    rows = [
        (
            str(v.version),
            " ".join(v.aliases),
            v.format,
            v.digest[:15],
            _short_source(v.source),
            when(v.created_at),
        )
        for v in versions
    ]
    _table(("VERSION", "ALIASES", "FORMAT", "DIGEST", "SOURCE", "CREATED"), rows)


def _short_source(source: str) -> str:
    """``run:<12 characters of the id>/<model>``: enough to find the run."""
    if not source.startswith("run:"):
        return source
    run_id, _, name = source[4:].partition("/")
    return f"run:{run_id[:12]}/{name}"


def _table(columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    from rich.table import Table

    from conveyor.cli.output import print_table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col, no_wrap=col not in ("DESCRIPTION", "SOURCE"))
    for row in rows:
        table.add_row(*row)
    print_table(table)
