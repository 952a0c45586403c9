"""What an isolated stream app is given: its binder's folder, the stream folders, its model.

A stream app runs sandboxed like any pushed app (:mod:`conveyor.platform.isolation`):
``$CONVEYOR_HOME`` is hidden from it, so the deployer hands each one what it
needs explicitly, once, when it is deployed:

- the embedded binder as ``embedded:///<home>/streams/log.db``, its folder read-write
  (every app of every stream on this machine shares that log);
- ``CONVEYOR_STREAM_DATA`` and ``CONVEYOR_STREAM_ROOTS`` in its environment, and those
  folders read-write (the app confines its file options to them, :mod:`conveyor.streams.paths`);
- for ``score --model=run:<id>/<name>`` (or ``models:/name@alias``): the model file
  read-only (the platform looks it up; the app cannot read the registry), with
  ``--model-run-id`` for lineage and ``--model-digest`` / ``--model-trusted-types``
  (the types the run recorded for that file, trusted while it keeps its digest);
- a registered app's files and packages read-only.

When the platform runs as root each app has a uid of its own, so a folder several
apps write (the binder's, the data folder) is opened to them by its mode bits —
only those folders: what holds them (the home, root's home) stays closed to other users.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from conveyor.config import Settings
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.repro.lookup import RunModel

__all__ = ["StreamSandbox", "sandboxed"]


@dataclass(frozen=True)
class StreamSandbox:
    """One stream app's launch spec as it runs isolated, and what it may see."""

    launch: dict[str, Any]
    env: dict[str, str]
    read_only: list[str]
    read_write: list[str]


def sandboxed(
    launch: Mapping[str, Any],
    env: Mapping[str, str],
    settings: Settings,
    run_model: Callable[[str], RunModel],
) -> StreamSandbox:
    """``launch`` (the runtime's spec, as JSON) and ``env`` rewritten for an isolated app."""
    shared = os.geteuid() == 0 and settings.isolation != "none"
    spec = dict(launch)
    options = dict(spec.get("options") or {})
    read_only: list[Path] = []
    read_write: list[Path] = []
    binder = str(spec.get("binder") or "embedded")
    parts = urlsplit(binder)
    if (parts.scheme or parts.path) == "embedded":
        from conveyor.streams.binders import embedded_log

        log = Path(parts.path) if parts.scheme and parts.path else embedded_log(settings)
        query = f"?{parts.query}" if parts.query else ""
        spec["binder"] = f"embedded://{log.resolve()}{query}"
        _shared_folder(log.parent, shared)
        if shared and not log.exists():
            # SQLite gives its WAL files the log's mode: every app's uid can then write them.
            os.close(os.open(log, os.O_CREAT | os.O_WRONLY, 0o666))
            log.chmod(0o666)
        read_write.append(log.parent)
    home = settings.home.expanduser().resolve()
    for folder, setting in [
        (settings.stream_data, "CONVEYOR_STREAM_DATA"),
        *((root, "CONVEYOR_STREAM_ROOTS") for root in settings.stream_roots),
    ]:
        if home.is_relative_to(folder.expanduser().resolve()):
            raise UsageError(
                f"{setting} names {folder}, which holds CONVEYOR_HOME ({home}): stream apps "
                "are isolated from the platform's files, so they cannot be given that folder",
                hint=f"Set {setting} to a folder beside CONVEYOR_HOME, not above it.",
            )
    _shared_folder(settings.stream_data, shared)
    read_write += [settings.stream_data, *settings.stream_roots]
    variables = {
        **env,
        "CONVEYOR_STREAM_DATA": str(settings.stream_data),
        "CONVEYOR_STREAM_ROOTS": os.pathsep.join(str(r) for r in settings.stream_roots),
    }
    model = str(options.get("model") or "")
    if spec.get("app") == "score" and model.startswith(("run:", "models:/")):
        found = run_model(model)
        options.update(
            {
                "model": str(found.path),
                "model-run-id": found.run_id or "",
                "model-digest": found.digest,
                "model-trusted-types": ",".join(found.trusted_types),
            }
        )
        read_only.append(found.path)
    for name in ("PYTHONPATH", "CONVEYOR_EXTRA_PATH"):  # a registered app's files and packages
        read_only += [Path(p) for p in variables.get(name, "").split(os.pathsep) if p]
    if options:
        spec["options"] = options
    return StreamSandbox(
        spec,
        variables,
        [str(p) for p in read_only],
        [str(p) for p in dict.fromkeys(read_write)],
    )


def _shared_folder(folder: Path, shared: bool) -> None:
    """Make ``folder``; as root, writable by every app's uid (the file source renames in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shared:
        with contextlib.suppress(OSError):
            folder.chmod(0o777)  # not sticky: SQLite removes another uid's WAL
