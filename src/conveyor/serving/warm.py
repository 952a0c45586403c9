"""A warm spare of ``conveyor serve``: the model loaded, waiting to be told which instance it is.

The platform (:mod:`conveyor.platform.warm`) starts one spare per model app
revision, through the same spawner and sandbox as any instance, with
:data:`SPARE_ENV` set. The spare imports the serving stack, loads and checks
the model, makes a FIFO named :data:`FIFO_NAME` in its folder (``$TMPDIR``
unless :data:`SPARE_ENV` names one), prints :data:`READY_LINE` and blocks on
the FIFO. When an instance must start, the platform writes the instance's own
variables (its port, index ...) there as one JSON object; the spare takes them
into its environment and starts listening — it *is* the instance from then on.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

__all__ = [
    "FIFO_NAME",
    "INSTANCE_VARIABLES",
    "MAX_MESSAGE",
    "READY_LINE",
    "SPARE_ENV",
    "await_activation",
]

#: Set in a spare's environment ("" or the folder for its FIFO); gone once it is activated.
SPARE_ENV = "CONVEYOR_WARM_SPARE"
#: The FIFO the platform writes the activation to, in the spare's folder.
FIFO_NAME = "conveyor-warm-start"
#: The line a spare prints once its model is loaded and its FIFO made.
READY_LINE = "conveyor-warm: ready"
#: The only variables an activation may set: what differs from one instance to the next.
INSTANCE_VARIABLES = frozenset(
    {"PORT", "CONVEYOR_INSTANCE_INDEX", "CF_INSTANCE_INDEX", "CF_INSTANCE_GUID", "CF_INSTANCE_PORT"}
)
#: Longest activation message read.
MAX_MESSAGE = 64 * 1024
#: What serving imports once it starts listening: a spare imports it while it waits.
_PRELOAD = ("conveyor.serving.app", "conveyor.serving.metrics", "conveyor.serving.wire", "uvloop")


def await_activation() -> bool:
    """In a spare, block until activated and take the instance's variables; False if no spare."""
    if SPARE_ENV not in os.environ:
        return False
    folder = Path(os.environ.pop(SPARE_ENV) or os.environ.get("TMPDIR") or "/tmp")  # noqa: S108
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    fifo = folder / FIFO_NAME
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    os.mkfifo(fifo, 0o600)
    print(READY_LINE, flush=True)
    try:
        with open(fifo, "rb") as channel:
            message = channel.read(MAX_MESSAGE)
    finally:
        with contextlib.suppress(OSError):
            fifo.unlink()
    try:
        variables = json.loads(message)
    except ValueError:
        variables = None
    if not isinstance(variables, dict) or not all(
        name in INSTANCE_VARIABLES and isinstance(value, str) for name, value in variables.items()
    ):
        sys.stderr.write("conveyor-warm: the activation message is not an instance's variables\n")
        raise SystemExit(2)
    os.environ.update(variables)
    return True
