"""``conveyor task ...``: composed tasks (batch pipelines) on the platform.

\b
  conveyor task app register --name prepare --path ./pipeline --command "python prepare.py"
  conveyor task create nightly --definition "prepare && <gbm: train || rf: train> && evaluate"
  conveyor task launch nightly --arguments "--date=2026-12-05" --wait
  conveyor task execution status <id>
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from conveyor.cli.client import connect, say
from conveyor.errors import UsageError

__all__ = ["task_group"]

_NAME = click.argument("name", metavar="TASK")
_EXECUTION = click.argument("execution", metavar="EXECUTION-ID")
_ARGUMENTS = click.option(
    "--arguments", default="", metavar="'--K=V ...'", help="Parameters for every step."
)


def parse_arguments(text: str) -> dict[str, str]:
    """``"--date=2026-12-05 --n=3"`` -> ``{"date": "2026-12-05", "n": "3"}`` (shell quoting)."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise UsageError(f"--arguments: {error}; quote values as a shell would") from error
    found: dict[str, str] = {}
    for word in words:
        key, sep, value = word.removeprefix("--").partition("=")
        if not word.startswith("--") or not sep or not key:
            raise UsageError(f"--arguments: {word!r} is not --name=value")
        found[key] = value
    return found


def parse_properties(text: str) -> dict[str, str]:
    """``"app.gbm.n=300,app.rf.n=100"`` -> a dict; each item must be KEY=VALUE."""
    found: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--properties: {item!r} is not app.<step>.<option>=value")
        found[key.strip()] = value
    return found


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _show(execution: dict[str, Any]) -> None:
    click.echo(
        f"execution {execution['id']} of {execution['task']}: {execution['state']}"
        + (f" ({execution['reason']})" if execution.get("reason") else "")
    )
    for step in execution["steps"]:
        run = (step["run_id"] or "-")[:12]
        status = step["exit_status"] or (
            "" if step["exit_code"] is None else f"exit {step['exit_code']}"
        )
        cached = " cached" if step["cached"] else ""
        reason = f"  {step['reason']}" if step["reason"] and step["reason"] != "cached" else ""
        click.echo(
            f"  {step['name']:<20} {step['state']:<10} {status:<12} run {run}{cached}{reason}"
        )


@click.group("task")
def task_group() -> None:
    """Composed tasks: batch pipelines in SCDF's task DSL, every step a recorded run."""


@task_group.group("app")
def app_group() -> None:
    """Task apps: what steps run."""


@app_group.command("register")
@click.option("--name", required=True, help="The name definitions use for it.")
@click.option(
    "--path",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder with the code and its requirements (uploaded, staged like a push).",
)
@click.option("--command", help='What a step runs in the folder, e.g. "python prepare.py".')
@click.option("--uri", help="Or a Python function: python:package.module:function.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds, then killed."
)
@click.option("--no-cache", is_flag=True, help="Always run it (its result is not reproducible).")
def app_register_command(
    name: str,
    folder: Path | None,
    command: str | None,
    uri: str | None,
    timeout: float | None,
    no_cache: bool,
) -> None:
    """Register a task app: a command in a folder, or a Python function."""
    from conveyor.cli.uploads import file_entries, upload_folder

    if (command is None) == (uri is None):
        raise UsageError(
            "give exactly one of --command and --uri", hint="See: conveyor task app register --help"
        )
    client = connect()
    files = None
    if folder is not None:
        local = upload_folder(client, folder, name)
        files = file_entries(local)
    body = {
        "name": name,
        "command": command,
        "uri": uri,
        "files": files,
        "cache": not no_cache,
        "timeout": timeout,
    }
    result = client.call("POST", "/v1/task-apps", body)
    staged = " (environment staged)" if result.get("droplet") else ""
    click.echo(f"task app {name} registered{staged}")


@app_group.command("list")
def app_list_command() -> None:
    """The built-in and registered task apps with their options."""
    for app in connect().call("GET", "/v1/task-apps"):
        options = "any" if app["options"] is None else ", ".join(sorted(app["options"])) or "-"
        what = app["command"] or app["uri"] or app["description"]
        click.echo(f"{app['name']:<16} {app['sort']:<8} options: {options:<20} {what}")


@app_group.command("unregister")
@click.argument("app_name", metavar="TASK-APP")
def app_unregister_command(app_name: str) -> None:
    """Forget a registered task app (refused while a task uses it)."""
    connect().call("DELETE", f"/v1/task-apps/{app_name}")
    click.echo(f"task app {app_name} unregistered")


@task_group.command("create")
@_NAME
@click.option("--definition", required=True, help='e.g. "prepare && <a || b> && evaluate"')
def create_command(name: str, definition: str) -> None:
    """Create a task from a definition (checked against the task apps)."""
    created = connect().call("POST", "/v1/tasks", {"name": name, "definition": definition})
    click.echo(f"task {name} created: {', '.join(s['name'] for s in created['steps'])}")


@task_group.command("validate")
@_NAME
@click.option("--definition", help="Check this definition instead of the stored one.")
def validate_command(name: str, definition: str | None) -> None:
    """Parse a definition and check every app and option; list its steps."""
    client = connect()
    if definition is None:
        definition = client.call("GET", f"/v1/tasks/{name}")["definition"]
    result = client.call("POST", "/v1/tasks/validate", {"name": name, "definition": definition})
    click.echo(f"{name}: valid")
    for step in result["steps"]:
        params = " ".join(f"--{k}={v}" for k, v in step["params"].items())
        click.echo(f"  {step['name']:<20} {step['app']:<16} {params}".rstrip())


_TARGET = click.option(
    "--target",
    default=None,
    callback=lambda _ctx, _param, value: None if value in (None, "local") else value,
    help="A Kubernetes target (default: local).",
)


@task_group.command("launch")
@_NAME
@_ARGUMENTS
@click.option("--properties", default="", metavar="K=V,...", help="app.<step>.<option>=value")
@click.option("--no-cache", is_flag=True, help="Run every step, even unchanged ones.")
@click.option("--wait", is_flag=True, help="Wait for the end; exit 1 unless it completed.")
@_TARGET
@click.option(
    "--image",
    help="With --target: the steps' image (else built from their files; built-in steps run "
    "in the target's runtime image).",
)
def launch_command(
    name: str,
    arguments: str,
    properties: str,
    no_cache: bool,
    wait: bool,
    target: str | None,
    image: str | None,
) -> None:
    """Start an execution of a task (on a Kubernetes target: each step a Job)."""
    body = {
        "params": parse_arguments(arguments),
        "properties": parse_properties(properties),
        "no_cache": no_cache,
        "target": target,
        "image": image,
    }
    client = connect()
    started = client.call("POST", f"/v1/tasks/{name}/launch", body)
    if not wait:
        click.echo(f"execution {started['id']} of {name} started")
        return
    say(f"execution {started['id']} of {name} started")
    done = client.call("GET", f"/v1/task-executions/{started['id']}?wait=true")
    _show(done)
    sys.exit(0 if done["state"] == "COMPLETED" else 1)


@task_group.command("list")
def list_command() -> None:
    """Every task with its definition and last execution's state."""
    for task in connect().call("GET", "/v1/tasks"):
        click.echo(f"{task['name']:<20} {task['last_execution'] or '-':<10} {task['definition']}")


@task_group.command("info")
@_NAME
def info_command(name: str) -> None:
    """A task's steps and recent executions."""
    info = connect().call("GET", f"/v1/tasks/{name}")
    click.echo(f"{name}: {info['definition']}")
    click.echo("steps: " + ", ".join(f"{s['name']} ({s['app']})" for s in info["steps"]))
    for ex in info["executions"]:
        click.echo(f"  {ex['id']}  {ex['state']:<10} {_when(ex['started_at'])}")


@task_group.command("destroy")
@_NAME
def destroy_command(name: str) -> None:
    """Stop a task's executions and forget it."""
    connect().call("DELETE", f"/v1/tasks/{name}")
    click.echo(f"task {name} destroyed")


@task_group.group("execution")
def execution_group() -> None:
    """Executions: list, status, log, stop, restart."""


@execution_group.command("list")
@click.option("--task", help="Only this task's executions.")
def execution_list_command(task: str | None) -> None:
    """Executions, newest first."""
    path = "/v1/task-executions" + (f"?task={task}" if task else "")
    for ex in connect().call("GET", path):
        click.echo(
            f"{ex['id']}  {ex['task']:<20} {ex['state']:<10} {_when(ex['started_at'])}"
            + (f"  {ex['reason']}" if ex["reason"] else "")
        )


@execution_group.command("status")
@_EXECUTION
def execution_status_command(execution: str) -> None:
    """An execution and each step: state, exit status, run, whether cached."""
    _show(connect().call("GET", f"/v1/task-executions/{execution}"))


@execution_group.command("log")
@_EXECUTION
@click.option("--step", help="Only this step's output.")
def execution_log_command(execution: str, step: str | None) -> None:
    """The recorded output of each step (or of one)."""
    path = f"/v1/task-executions/{execution}/log" + (f"?step={step}" if step else "")
    for entry in connect().call("GET", path):
        click.echo(f"== {entry['step']} ({entry['state']}, run {(entry['run_id'] or '-')[:12]})")
        for line in entry["lines"]:
            click.echo(line)


@execution_group.command("stop")
@_EXECUTION
def execution_stop_command(execution: str) -> None:
    """Stop the running steps and mark the rest; the execution can be restarted."""
    _show(connect().call("POST", f"/v1/task-executions/{execution}/stop"))


@execution_group.command("restart")
@_EXECUTION
@click.option("--arguments", default=None, metavar="'--K=V ...'", help="New parameters.")
@click.option("--wait", is_flag=True, help="Wait for the end; exit 1 unless it completed.")
def execution_restart_command(execution: str, arguments: str | None, wait: bool) -> None:
    """Run the failed and unrun steps again; completed steps are kept."""
    params = None if arguments is None else parse_arguments(arguments)
    client = connect()
    started = client.call("POST", f"/v1/task-executions/{execution}/restart", {"params": params})
    if not wait:
        click.echo(f"execution {started['id']} restarted (attempt {started['attempts']})")
        return
    done = client.call("GET", f"/v1/task-executions/{started['id']}?wait=true")
    _show(done)
    sys.exit(0 if done["state"] == "COMPLETED" else 1)


@task_group.group("schedule")
def schedule_group() -> None:
    """Schedules: launch a task on a cron expression in a time zone."""


_SCHEDULE = click.argument("schedule", metavar="SCHEDULE")


@schedule_group.command("create")
@_SCHEDULE
@click.option("--task", "task", required=True, help="The task to launch.")
@click.option("--cron", required=True, help='Five fields, e.g. "0 2 * * *" (02:00 every day).')
@click.option("--timezone", default="UTC", show_default=True, help="e.g. Europe/London")
@_ARGUMENTS
@click.option("--properties", default="", metavar="K=V,...", help="app.<step>.<option>=value")
@click.option("--no-catch-up", is_flag=True, help="After downtime, wait for the next time.")
@click.option(
    "--when-busy",
    type=click.Choice(["skip", "queue"]),
    default="skip",
    show_default=True,
    help="While the previous execution runs: skip the fire time, or queue it (one at most).",
)
@_TARGET
@click.option(
    "--image",
    help="With --target: the step's image (else built from its files; a built-in step runs "
    "in the target's runtime image).",
)
def schedule_create_command(
    schedule: str,
    task: str,
    cron: str,
    timezone: str,
    arguments: str,
    properties: str,
    no_catch_up: bool,
    when_busy: str,
    target: str | None,
    image: str | None,
) -> None:
    """Create a schedule (run by the platform; a busy task's turn is skipped or queued).

    With --target: a one-step task's schedule is a CronJob (a busy turn is
    skipped); a composed task's is run by the platform, which launches it on
    the target at each fire time (each step a Job).
    """
    if target is not None:
        cluster: dict[str, Any] = {"name": schedule, "task": task, "cron": cron}
        cluster |= {"timezone": timezone, "params": parse_arguments(arguments), "image": image}
        if properties:
            cluster["properties"] = parse_properties(properties)
        cluster |= {"catch_up": not no_catch_up, "when_busy": when_busy}
        made = connect().call("POST", f"/v1/targets/{target}/task-schedules", cluster)
        if made.get("runs_in") == "server":
            click.echo(
                f"schedule {schedule} created on {target}: the platform launches {task} there "
                f"at {made['cron']!r} (each step a Job), next at {_when(made['next_fire'])}"
            )
        else:
            click.echo(f"schedule {schedule} created on {target}: CronJob {made['cron']!r}")
        click.echo(f"  image {made['image'] or 'built from each task app when it fires'}")
        return
    if image is not None:
        raise UsageError("--image is for a Kubernetes target: add --target NAME")
    body = {
        "name": schedule,
        "task": task,
        "cron": cron,
        "timezone": timezone,
        "params": parse_arguments(arguments),
        "properties": parse_properties(properties),
        "catch_up": not no_catch_up,
        "when_busy": when_busy,
    }
    created = connect().call("POST", "/v1/task-schedules", body)
    click.echo(f"schedule {schedule} created: {task} next at {_when(created['next_fire'])}")


@schedule_group.command("list")
@_TARGET
def schedule_list_command(target: str | None) -> None:
    """Every schedule with its next fire time and last event (on a target: its CronJobs, and
    the composed tasks' schedules the platform runs there)."""
    if target is not None:
        for s in connect().call("GET", f"/v1/targets/{target}/task-schedules"):
            state = "paused" if s["paused"] else "active"
            last = s["last_fired"] or "never fired"
            zone = s["time_zone"] or "-"
            where = "  (run by the platform)" if s.get("runs_in") == "server" else ""
            click.echo(
                f"{s['name']:<20} {s['task'] or '-':<16} {s['cron']:<14} {zone:<16} {state}  "
                f"{last}{where}"
            )
        return
    for s in connect().call("GET", "/v1/task-schedules"):
        state = "paused" if s["paused"] else f"next {_when(s['next_fire'])}"
        if s.get("when_busy") == "queue":
            state += " (queues when busy)"
        if s.get("target"):
            state += f" on {s['target']}"
        last = s["events"][-1]["message"] if s["events"] else "-"
        click.echo(
            f"{s['name']:<20} {s['task']:<16} {s['cron']:<14} {s['timezone']:<16} {state}  {last}"
        )


@schedule_group.command("pause")
@_SCHEDULE
@_TARGET
def schedule_pause_command(schedule: str, target: str | None) -> None:
    """Stop launching until resumed (on a target: the CronJob is suspended)."""
    connect().call("POST", f"{_schedules(target)}/{schedule}/pause")
    click.echo(f"schedule {schedule} paused" + (f" on {target}" if target else ""))


def _schedules(target: str | None) -> str:
    return "/v1/task-schedules" if target is None else f"/v1/targets/{target}/task-schedules"


@schedule_group.command("resume")
@_SCHEDULE
@_TARGET
def schedule_resume_command(schedule: str, target: str | None) -> None:
    """Launch again from the next fire time (paused ones are not caught up)."""
    if target is not None:
        connect().call("POST", f"{_schedules(target)}/{schedule}/resume")
        click.echo(f"schedule {schedule} resumed on {target}")
        return
    resumed = connect().call("POST", f"/v1/task-schedules/{schedule}/resume")
    click.echo(f"schedule {schedule} resumed: next at {_when(resumed['next_fire'])}")


@schedule_group.command("destroy")
@_SCHEDULE
@_TARGET
def schedule_destroy_command(schedule: str, target: str | None) -> None:
    """Forget a schedule (on a target: delete its CronJob)."""
    connect().call("DELETE", f"{_schedules(target)}/{schedule}")
    click.echo(f"schedule {schedule} destroyed" + (f" on {target}" if target else ""))
