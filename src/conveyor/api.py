"""The Python API users call from their scripts (re-exported by ``import conveyor``).

Inside ``conveyor run`` each call appends an event to the run's journal,
which the recorder reads when the command ends. Outside it, the first call
starts a run of the current script (see :mod:`conveyor.repro.local`).
This module must stay cheap to import: it runs inside the user's process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from conveyor.errors import RunError, UsageError

# The engines' module imports no engine until a step asks for one: cheap here.
from conveyor.tasks import batch

__all__ = [
    "batch",
    "exit_status",
    "input",
    "log_metric",
    "log_metrics",
    "output",
    "param",
    "run_id",
    "save_model",
    "seed",
]

T = TypeVar("T")
_params_seen: dict[str, Any] = {}


def _run_dir() -> str:
    current = os.environ.get("CONVEYOR_RUN_DIR")
    if current:
        return current
    from conveyor.repro.local import start_local_run

    return start_local_run()


def _journal(kind: str, **fields: Any) -> None:
    from conveyor.repro.journal import append_event
    from conveyor.repro.metric_journal import flush_metrics

    run_dir = _run_dir()
    flush_metrics()  # the journal keeps the order the script logged in
    append_event(run_dir, kind, **fields)


def convert_param(name: str, text: str, default: Any) -> Any:
    """Turn a command-line parameter string into the type of ``default``."""
    if default is None:
        try:
            return json.loads(text)
        except ValueError:
            return text
    kind = type(default)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
        return json.loads(text)
    except ValueError:
        raise UsageError(
            f"parameter {name}={text!r} is not a valid {kind.__name__} "
            f"(the script's default is {default!r})"
        ) from None


def param(name: str, default: T) -> T:
    """The value of parameter ``name``: from ``--param name=value`` if given, else ``default``.

    The value used is recorded with the run.
    """
    given = json.loads(os.environ.get("CONVEYOR_PARAMS", "{}"))
    value = convert_param(name, given[name], default) if name in given else default
    if _params_seen.get(name, value) != value:
        raise UsageError(
            f"parameter {name!r} was already read as {_params_seen[name]!r}; "
            f"it cannot also be {value!r} in the same run"
        )
    if name not in _params_seen:
        _params_seen[name] = value
        _journal("param", key=name, value=value)
    return value


#: The run folder once known: a process belongs to one run, and reading os.environ
#: on every step cost a third of log_metric (about 1 µs).
_metric_dir: list[str] = []


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record a metric value (optionally at a step, e.g. an epoch)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"metric {key!r} must be a number, not {value!r}") from None
    if not _metric_dir:
        _metric_dir.append(_run_dir())
    _append_metric(_metric_dir[0], key, number, step)


def _append_metric(run_dir: str, key: str, value: float, step: int | None) -> None:
    """Replaced by metric_journal.append_metric on first use: a step pays no import statement."""
    global _append_metric  # noqa: PLW0603 - a lazy import of a hot function
    from conveyor.repro.metric_journal import append_metric

    _append_metric = append_metric
    append_metric(run_dir, key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Record several metrics at once."""
    for key, value in metrics.items():
        log_metric(key, value, step)


def input(path: str | os.PathLike[str]) -> str:
    """Declare a file the run reads; it is stored by digest so ``reproduce`` can restore it.

    Returns the path, so it can wrap the call that opens it:
    ``pd.read_csv(conveyor.input("data/train.csv"))``.
    """
    p = Path(path)
    if not p.is_file():
        raise RunError(f"input {path} does not exist or is not a file (cwd: {Path.cwd()})")
    from conveyor.repro.journal import append_event

    # A sandboxed task step cannot reach the store: its recorder stores the file.
    sandboxed = "CONVEYOR_RUN_DIR" in os.environ and not os.environ.get("CONVEYOR_ARTIFACT_ROOT")
    run_dir = _run_dir()
    digest = None
    if not sandboxed:
        from conveyor.config import get_settings
        from conveyor.store.artifacts import ArtifactStore

        digest = ArtifactStore.from_settings(get_settings()).put_file(p)
    append_event(run_dir, "input", path=str(p.resolve()), digest=digest, size=p.stat().st_size)
    return os.fspath(path)


def output(path: str | os.PathLike[str]) -> str:
    """Declare a file the run writes; it is stored when the run ends and checked by reproduce.

    Creates the file's folder, so ``open(conveyor.output("out/x.json"), "w")`` works.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _journal("output", path=str(target.resolve()))
    return os.fspath(path)


def save_model(
    model: Any, name: str, *, path: str | os.PathLike[str] | None = None, example: Any = None
) -> str:
    """Save a model with its signature and record it with the run; returns the file's path.

    scikit-learn estimators are saved with skops as ``<name>.skops`` (no pickle).
    ``example`` (a DataFrame of a few rows) lets the signature carry column dtypes.
    """
    from conveyor.models.sklearn import save
    from conveyor.models.skops_canonical import canonicalize

    target = Path(path) if path is not None else Path(f"{name}.skops")
    target.parent.mkdir(parents=True, exist_ok=True)
    signature = save(model, target, example)
    canonicalize(target)  # the same model always gives the same bytes, so reproduce can verify
    import skops.io as sio

    from conveyor.store.artifacts import digest_file

    _journal(
        "model",
        name=name,
        path=str(target.resolve()),
        format="sklearn",
        signature=signature.to_json(),
        # The exact types this file needs, written by this run: served through the
        # registry (digest verified) they are trusted without CONVEYOR_TRUSTED_TYPES.
        trusted_types=sorted(sio.get_untrusted_types(file=target)),
        digest=digest_file(target),
    )
    return os.fspath(target)


def seed() -> int:
    """The run's seed (drawn at random and recorded, unless given with --seed)."""
    _run_dir()
    return int(os.environ["CONVEYOR_RUN_SEED"])


def run_id() -> str | None:
    """The id of the current run, if there is one."""
    return os.environ.get("CONVEYOR_RUN_ID")


def exit_status(status: str) -> None:
    """Set the exit status a composed task's transitions see for this step (e.g. ``NO_DATA``).

    ``'NO_DATA'->skip`` in a definition then matches. Outside a task step the
    status has nowhere to go and the call does nothing.
    """
    if not isinstance(status, str) or not status.strip() or "\n" in status:
        raise UsageError(f"exit status must be one line of text, got {status!r}")
    target = os.environ.get("CONVEYOR_EXIT_STATUS_FILE")
    if target:
        Path(target).write_text(status.strip())
