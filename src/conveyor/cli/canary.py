"""``conveyor canary APP [promote|abort] [--weight N]`` and the ``push --canary`` options.

A canary starts with ``conveyor push --canary 10``: the new revision runs
beside the current one and gets 10 % of the requests. This command shows it,
changes its share, promotes it or aborts it.
"""

from __future__ import annotations

from typing import Any

import click

from conveyor.cli.client import connect
from conveyor.cli.output import when
from conveyor.errors import UsageError

__all__ = ["canary_command", "canary_options", "canary_policy", "canary_text"]


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Seconds, written ``90``, ``90s``, ``5m`` or ``1h``."""
    from conveyor.platform.manifest_canary import seconds

    if value is None:
        return None
    found = seconds(value if value.strip()[-1:].isalpha() else value + "s")
    if found is None:
        raise click.BadParameter(f"{value!r} is not a duration (for example 30s, 5m, 1h)")
    return found


def canary_options(command: Any) -> Any:
    """The ``push`` options that make the push a canary, and say how it may end by itself."""
    options = [
        click.option(
            "--canary",
            "canary",
            type=click.IntRange(1, 99),
            metavar="PERCENT",
            help="Run the new revision beside the current one, sent PERCENT % of requests.",
        ),
        click.option(
            "--promote-after",
            metavar="DURATION",
            callback=_duration,
            help="Promote the canary after this long without a breach (e.g. 5m).",
        ),
        click.option(
            "--max-error-rate",
            type=click.FloatRange(0, 100),
            help="Roll back when its error rate exceeds the current one's by more points "
            "[default: 5].",
        ),
        click.option(
            "--max-p95-ratio",
            type=click.FloatRange(1),
            help="Roll back when its p95 latency exceeds the current one's this many times "
            "[default: 2].",
        ),
        click.option(
            "--canary-window",
            metavar="DURATION",
            callback=_duration,
            help="How long each judged window lasts [default: 10s].",
        ),
        click.option(
            "--min-requests",
            type=click.IntRange(1),
            help="A window where the canary served fewer requests joins the next [default: 20].",
        ),
        click.option("--no-rollback", is_flag=True, help="Never roll the canary back by itself."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def canary_policy(options: dict[str, Any]) -> dict[str, Any] | None:
    """The push body's ``canary`` from the options; None without ``--canary``."""
    given = {
        "promote_after": options.get("promote_after"),
        "max_error_rate": options.get("max_error_rate"),
        "max_p95_ratio": options.get("max_p95_ratio"),
        "window": options.get("canary_window"),
        "min_requests": options.get("min_requests"),
    }
    given = {k: v for k, v in given.items() if v is not None}
    if options.get("canary") is None:
        if given or options.get("no_rollback"):
            raise UsageError(
                "--promote-after, --max-error-rate, --max-p95-ratio, --canary-window, "
                "--min-requests and --no-rollback apply to a canary only",
                hint="Add --canary PERCENT, e.g. conveyor push --canary 10 --promote-after 5m",
            )
        return None
    return {"weight": options["canary"], "rollback": not options.get("no_rollback"), **given}


def canary_text(name: str, canary: dict[str, Any]) -> list[str]:
    """What ``conveyor app`` and ``conveyor canary`` print about a canary in progress."""
    policy = canary["policy"]
    lines = [
        f"canary:   revision {canary['canary']} gets {canary['weight']} %, "
        f"revision {canary['stable']} the rest (since {when(canary['started_at'])})"
    ]
    counts = canary.get("instances")
    if counts:  # the app's instances, shared by the weight
        lines.append(
            f"          instances: {counts[str(canary['canary'])]} of revision {canary['canary']}, "
            f"{counts[str(canary['stable'])]} of revision {canary['stable']}"
        )
    for why in canary.get("held", {}).values():  # its crash backoff holds that side only
        lines.append(f"          held: {why}; its share waits until its instances run")
    ends = []
    if policy["promote_after"] is not None:
        ends.append(f"promoted after {policy['promote_after']:g} s without a breach")
    if policy["rollback"]:
        ends.append(
            f"rolled back if its error rate is {policy['max_error_rate']:g} points or its "
            f"p95 {policy['max_p95_ratio']:g} times worse (windows of {policy['window']:g} s)"
        )
    lines.append(
        "          "
        + ("; ".join(ends) if ends else f"ends with `conveyor canary {name} promote` or `abort`")
    )
    for revision, total in sorted(canary["totals"].items()):
        last = canary["last_window"].get(revision)
        p95 = "" if not last else f", p95 {last['p95_ms']:.0f} ms in the last window"
        lines.append(
            f"          revision {revision}: {total['requests']} requests, "
            f"{total['errors']} errors{p95}"
        )
    return lines


@click.command("canary")
@click.argument("name", metavar="APP")
@click.argument("action", required=False, type=click.Choice(["promote", "abort"]))
@click.option("-w", "--weight", type=click.IntRange(0, 100), help="Percent of requests it gets.")
def canary_command(name: str, action: str | None, weight: int | None) -> None:
    """An app's canary: show it, change its --weight, promote it or abort it.

    \b
    conveyor push --canary 10       start one (10 % of requests to the new revision)
    conveyor canary APP             how it is doing
    conveyor canary APP --weight 50
    conveyor canary APP promote     the new revision takes every request
    conveyor canary APP abort       the current revision takes every request
    """
    client = connect()
    if action is not None and weight is not None:
        raise UsageError(f"--weight changes a running canary; it cannot go with {action!r}")
    if action is not None:
        result = client.call("POST", f"/v1/apps/{name}/canary/{action}")
        click.echo(f"{name}: {result['message']}")
        return
    if weight is not None:
        canary = client.call("POST", f"/v1/apps/{name}/canary", {"weight": weight})
    else:
        canary = client.call("GET", f"/v1/apps/{name}/canary")
    for line in canary_text(name, canary):
        click.echo(f"{name}: {line}" if line.startswith("canary") else line)
