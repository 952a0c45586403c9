"""Task apps: what a step of a composed task can run, and the options each takes.

Three sorts: built-ins (``shell``, ``timestamp``, ``sql``), a Python function
(``python:mypkg.jobs:train``, called with the step's options as keyword
arguments) and a command in an uploaded folder, staged with its requirements
as a push is. Every app also takes ``--input`` (files, or an earlier step's
outputs as ``@step/path``) and ``--output`` (files it writes, recorded by digest),
both comma-separated.

:func:`check_apps` is what ``task create`` runs: an unknown app, an unknown
option or a missing required one is refused there, naming the step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import UsageError
from conveyor.tasks.dsl import App, Definition

__all__ = ["BUILTINS", "COMMON_OPTIONS", "TaskApp", "check_apps", "parse_python_uri"]

#: Options every app takes; the launcher consumes them.
COMMON_OPTIONS = {
    "input": "files the step reads, comma-separated; @step/path is an earlier step's output",
    "output": "files the step writes, comma-separated; recorded by digest",
}
_PYTHON_URI = re.compile(r"python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)\Z")
_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?\Z")


def parse_python_uri(uri: str) -> tuple[str, str]:
    """``python:mypkg.jobs:train`` -> ``("mypkg.jobs", "train")``; UsageError otherwise."""
    match = _PYTHON_URI.match(uri)
    if match is None:
        raise UsageError(
            f"{uri!r} is not a Python function app; expected python:package.module:function"
        )
    return match[1], match[2]


@dataclass(frozen=True)
class TaskApp:
    """One app a step can name."""

    name: str
    #: ``builtin``, ``python`` or ``command``.
    sort: str
    description: str = ""
    command: str | None = None
    uri: str | None = None
    #: Option name -> what it means; ``None`` takes any option (given to the app as params).
    options: Mapping[str, str] | None = None
    required: tuple[str, ...] = ()
    #: Whether a finished step's run may be reused when nothing it depends on changed.
    cache: bool = True
    #: Seconds a step may run before it is killed and fails; None: no limit.
    timeout: float | None = None
    #: Uploaded files (relative path -> {"digest", "mode"}) and their staged droplet.
    files: Mapping[str, Mapping[str, Any]] | None = None
    droplet: Mapping[str, Any] | None = field(default=None, compare=False)

    def check_name(self) -> None:
        if not _APP_NAME.match(self.name):
            raise UsageError(
                f"{self.name!r} is not a valid task app name; use lower-case letters, digits "
                "and '-' (at most 42)"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sort": self.sort,
            "description": self.description,
            "command": self.command,
            "uri": self.uri,
            "options": None if self.options is None else dict(self.options),
            "required": list(self.required),
            "cache": self.cache,
            "timeout": self.timeout,
            "files": None if self.files is None else {k: dict(v) for k, v in self.files.items()},
            "droplet": None if self.droplet is None else dict(self.droplet),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskApp:
        return cls(**{**data, "required": tuple(data.get("required") or ())})


BUILTINS: dict[str, TaskApp] = {
    app.name: app
    for app in (
        TaskApp(
            "shell",
            "builtin",
            "run a shell command line",
            options={"command": "the command line, run by /bin/sh"},
            required=("command",),
        ),
        TaskApp(
            "timestamp",
            "builtin",
            "print the time (a step to check a pipeline's wiring)",
            options={"format": "a strftime format (default: %Y-%m-%d %H:%M:%S)"},
            # The time differs on every run: reusing an old one would be wrong.
            cache=False,
        ),
        TaskApp(
            "sql",
            "builtin",
            "run the statements of a query file against a database URL",
            options={
                "url": "an SQLAlchemy database URL, e.g. sqlite:///data.db",
                "file": "the query file (an input of the step), statements split by ';'",
            },
            required=("url", "file"),
            # The database's content is not an input the recorder can hash.
            cache=False,
        ),
    )
}


def check_apps(definition: Definition, apps: Mapping[str, TaskApp]) -> None:
    """Refuse a definition naming an app or option the catalogue does not know."""
    for app in definition.apps():
        known = apps.get(app.name) or BUILTINS.get(app.name)
        if known is None:
            names = ", ".join(sorted({*BUILTINS, *apps}))
            raise UsageError(
                f"step {app.step!r} (position {app.position}) names the unknown app "
                f"{app.name!r}; known apps: {names}. Register it first: conveyor task app "
                f"register --name {app.name} --path ./folder --command '...'"
            )
        _check_options(app, known)


def _check_options(app: App, known: TaskApp) -> None:
    given = {a.name for a in app.arguments}
    if known.options is not None:
        allowed = {*known.options, *COMMON_OPTIONS}
        for argument in app.arguments:
            if argument.name not in allowed:
                raise UsageError(
                    f"step {app.step!r} (position {argument.position}): app {known.name!r} has "
                    f"no option --{argument.name}; its options: {', '.join(sorted(allowed))}"
                )
    missing = [name for name in known.required if name not in given]
    if missing:
        raise UsageError(
            f"step {app.step!r} (position {app.position}): app {known.name!r} needs "
            + ", ".join(f"--{m}=..." for m in missing)
        )
