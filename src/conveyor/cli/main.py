"""The ``conveyor`` command: a Click group whose subcommands load on demand.

Each subcommand lives in its own module and is imported only when invoked
(or when ``--help`` lists it), so ``conveyor --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from conveyor._version import __version__
from conveyor.errors import ConveyorError

#: command name -> "module:attribute" of its click.Command.
COMMANDS: dict[str, str] = {
    "run": "conveyor.cli.runs:run_command",
    "runs": "conveyor.cli.runs:runs_group",
    "reproduce": "conveyor.cli.runs:reproduce_command",
    "artifacts": "conveyor.cli.artifacts:artifacts_group",
    "models": "conveyor.cli.models:models_group",
    "serve": "conveyor.cli.serve:serve_command",
    "lineage": "conveyor.cli.lineage:lineage_command",
    "stream": "conveyor.cli.streams:stream_group",
    "catalog": "conveyor.cli.catalog:catalog_group",
    "task": "conveyor.cli.tasks:task_group",
    "droplets": "conveyor.cli.platform:droplets_group",
    "image": "conveyor.cli.images:image_group",
    "server": "conveyor.cli.lifecycle:server_command",
    "up": "conveyor.cli.lifecycle:up_command",
    "down": "conveyor.cli.lifecycle:down_command",
    "status": "conveyor.cli.lifecycle:status_command",
    "dashboard": "conveyor.cli.lifecycle:dashboard_command",
    "push": "conveyor.cli.platform:push_command",
    "canary": "conveyor.cli.canary:canary_command",
    "apps": "conveyor.cli.apps:apps_command",
    "app": "conveyor.cli.apps:app_command",
    "scale": "conveyor.cli.platform:scale_command",
    "logs": "conveyor.cli.apps:logs_command",
    "events": "conveyor.cli.apps:events_command",
    "set-env": "conveyor.cli.platform:set_env_command",
    "unset-env": "conveyor.cli.platform:unset_env_command",
    "restart": "conveyor.cli.platform:restart_command",
    "restage": "conveyor.cli.platform:restage_command",
    "start": "conveyor.cli.platform:start_command",
    "stop": "conveyor.cli.platform:stop_command",
    "delete": "conveyor.cli.platform:delete_command",
    "revisions": "conveyor.cli.apps:revisions_command",
    "rollback": "conveyor.cli.platform:rollback_command",
    "create-service": "conveyor.cli.services:create_service_command",
    "services": "conveyor.cli.services:services_command",
    "delete-service": "conveyor.cli.services:delete_service_command",
    "bind-service": "conveyor.cli.services:bind_service_command",
    "unbind-service": "conveyor.cli.services:unbind_service_command",
    "target": "conveyor.cli.targets:target_group",
    "k8s": "conveyor.cli.kubernetes:k8s_group",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # a command whose module is not written yet
            raise
        command: click.Command = getattr(module, attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conveyor")
def cli() -> None:
    """Conveyor: reproducible runs, models as services, pipelines as code."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="conveyor")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
