"""Bound services: user-provided credentials apps get in ``CONVEYOR_SERVICES``."""

from __future__ import annotations

import json

import click

from conveyor.cli.client import connect
from conveyor.cli.platform import app_argument, restart_note
from conveyor.errors import UsageError

__all__ = [
    "bind_service_command",
    "create_service_command",
    "delete_service_command",
    "services_command",
    "unbind_service_command",
]


@click.command("create-service")
@click.argument("service")
@click.option("-p", "--parameters", required=True, help="Credentials as a JSON object.")
def create_service_command(service: str, parameters: str) -> None:
    """Create (or update) a user-provided service: credentials apps get when bound."""
    try:
        credentials = json.loads(parameters)
    except ValueError as exc:
        raise UsageError(f"-p is not JSON: {exc}") from None
    if not isinstance(credentials, dict):
        raise UsageError('-p must be a JSON object, e.g. \'{"url": "postgresql://..."}\'')
    result = connect().call("POST", "/v1/services", {"name": service, "credentials": credentials})
    click.echo(f"service {service} {'created' if result['created'] else 'updated'}")


@click.command("services")
def services_command() -> None:
    """User-provided services and the apps bound to them."""
    services = connect().call("GET", "/v1/services")
    if not services:
        click.echo("No services. Create one with `conveyor create-service NAME -p '{...}'`.")
    for s in services:
        click.echo(
            f"{s['name']}  keys: {', '.join(s['keys']) or '-'}  "
            f"bound to: {', '.join(s['bound_to']) or '-'}"
        )


@click.command("delete-service")
@click.argument("service")
def delete_service_command(service: str) -> None:
    """Delete a service that no app is bound to."""
    connect().call("DELETE", f"/v1/services/{service}")
    click.echo(f"service {service} deleted")


def _bind(name: str, service: str, *, bound: bool) -> None:
    verb = "PUT" if bound else "DELETE"
    result = connect().call(verb, f"/v1/apps/{name}/services/{service}")
    did = "binds" if bound else "unbinds"
    click.echo(f"{name}: revision {result['revision']} {did} {service}" + restart_note(name))


@click.command("bind-service")
@app_argument
@click.argument("service")
def bind_service_command(name: str, service: str) -> None:
    """Bind a service: its credentials arrive in CONVEYOR_SERVICES after a restart."""
    _bind(name, service, bound=True)


@click.command("unbind-service")
@app_argument
@click.argument("service")
def unbind_service_command(name: str, service: str) -> None:
    """Unbind a service (takes effect after a restart)."""
    _bind(name, service, bound=False)
