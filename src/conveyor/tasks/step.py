"""What a step's process runs: the command line for each sort of task app.

The platform records the step as a run and starts this command line in the
step's working folder (:mod:`conveyor.orchestrate.task_launcher`). A step sets
the exit status its transitions see with ``conveyor.exit_status``, which
writes it to the file named by ``CONVEYOR_EXIT_STATUS_FILE``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["STATUS_FILE", "STATUS_VARIABLE", "step_command"]

#: Where ``conveyor.exit_status`` writes the status a step chose.
STATUS_VARIABLE = "CONVEYOR_EXIT_STATUS_FILE"
#: That file's name in the step's working folder.
STATUS_FILE = ".conveyor-exit-status"


def step_command(app: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The command line of a step of ``app`` (its ``sort``, ``app``, ``command``, ``uri``)."""
    sort, name = app["sort"], app["app"]
    if sort == "command":
        return ["/bin/sh", "-c", str(app["command"])]
    if sort == "python":
        return [sys.executable, "-m", "conveyor.tasks.builtins", "python", str(app["uri"])]
    if name == "shell":
        return ["/bin/sh", "-c", str(params["command"])]
    return [sys.executable, "-m", "conveyor.tasks.builtins", name]
