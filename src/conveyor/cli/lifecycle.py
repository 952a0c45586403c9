"""The platform process: ``conveyor server`` (foreground), ``up``, ``down`` and ``status``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from conveyor.cli.client import PlatformClient, PlatformNotRunning, connect
from conveyor.cli.output import when
from conveyor.config import get_settings
from conveyor.errors import UsageError
from conveyor.store.files import private_dir

__all__ = [
    "dashboard_command",
    "down_command",
    "server_command",
    "status_command",
    "up_command",
]


@click.command("server")
def server_command() -> None:
    """Run the platform in the foreground (control API, router, supervisor)."""
    from conveyor.server.main import run_server

    run_server(get_settings())


@click.command("up")
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to wait for it.")
def up_command(wait_s: float) -> None:
    """Start the platform in the background; `conveyor down` stops it."""
    settings = get_settings()
    client = PlatformClient(settings, timeout=5)
    info = _info(client) if client.alive() else None
    if info is not None:
        click.echo(f"The platform is already running (pid {info['pid']}).")
        _describe(info)
        return
    pdir = settings.platform_dir
    private_dir(pdir)  # and the home, 0700 both, when `up` is the first command
    (pdir / "server.json").unlink(missing_ok=True)
    log_path = pdir / "server.log"
    with log_path.open("ab") as log:
        start_at = log.tell()
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _tail(log_path, start_at)
            raise UsageError(
                f"the platform stopped at once (exit status {process.returncode}):\n{tail}"
            )
        client = PlatformClient(settings, timeout=5)
        info = _info(client) if client.pid == process.pid else None
        if info is not None:
            click.echo(f"Platform started (pid {info['pid']}); its log: {log_path}")
            _describe(info)
            return
        time.sleep(0.1)
    raise UsageError(f"the platform did not answer within {wait_s:g} s; see {log_path}")


def _info(client: PlatformClient) -> dict[str, Any] | None:
    """What the platform says of itself, or None while it does not answer."""
    try:
        info: dict[str, Any] = client.call("GET", "/v1/info")
    except PlatformNotRunning:
        return None
    return info


def _tail(path: Path, start: int, lines: int = 15) -> str:
    with path.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _describe(info: dict[str, Any]) -> None:
    click.echo(f"  API:    {info['api']}")
    click.echo(f"  router: {info['router']}")
    click.echo(f"  home:   {info['home']}")
    click.echo(
        f"Dashboard: {info['api']}/ui (log in with the token, or `conveyor dashboard` for a link)"
    )
    if "artifacts" in info:
        click.echo(f"  store:  {info['artifacts']}")
    if "binder" in info:
        click.echo(f"  binder: {info['binder']} by default; `stream info` shows each stream's")


@click.command("dashboard")
@click.option("--print-only", is_flag=True, help="Print the login link; do not open a browser.")
def dashboard_command(print_only: bool) -> None:
    """Open the web dashboard in a browser, logged in by a one-time link."""
    client = connect(timeout=10)
    api = client.call("GET", "/v1/info")["api"]
    url = api + client.call("POST", "/ui/link")["path"]
    click.echo(f"Dashboard: {url}")
    click.echo("  (a one-time link: it logs one browser in within 5 minutes)")
    if not print_only and _has_display():
        import webbrowser

        webbrowser.open(url)


def _has_display() -> bool:
    """Whether a browser could show a window here (not over ssh, not in CI)."""
    import os

    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


@click.command("down")
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait for it.")
def down_command(wait_s: float) -> None:
    """Stop every instance, then the platform (the apps start again with `conveyor up`)."""
    client = connect()
    try:
        client.call("POST", "/v1/shutdown")
    except PlatformNotRunning:
        click.echo("The platform is not running.")
        return
    deadline = time.monotonic() + wait_s
    while client.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if client.alive():
        raise UsageError(f"the platform (pid {client.pid}) is still stopping after {wait_s:g} s")
    click.echo("Platform stopped.")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(as_json: bool) -> None:
    """Whether the platform runs, where, and its apps."""
    client = connect()
    info = client.call("GET", "/v1/info")
    apps = client.call("GET", "/v1/apps")
    if as_json:
        click.echo(json.dumps({**info, "apps": apps}, indent=2))
        return
    click.echo(f"Platform running (pid {info['pid']}, up since {when(info['started_at'])})")
    _describe(info)
    running = sum(a["running"] for a in apps)
    desired = sum(a["instances"] for a in apps if a["desired_state"] == "started")
    click.echo(f"  apps:   {len(apps)}, instances running {running}/{desired}")
