"""The process a step launch starts: the step's command as a recorded Conveyor run.

The platform's target launches ``python -m conveyor.tasks.step`` in the step's
working folder with the step described in ``CONVEYOR_TASK_STEP`` (JSON: the
app, its params, inputs and outputs, the run's name). It records the command
exactly as ``conveyor run`` does (code snapshot, params, seed, packages,
threads, inputs and outputs by digest), then writes what the executor needs —
the run id, the exit code and the exit status the step set with
``conveyor.exit_status`` — to the ``result`` file, and exits with the step's code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["STATUS_VARIABLE", "STEP_VARIABLE", "step_command"]

STEP_VARIABLE = "CONVEYOR_TASK_STEP"
#: Where ``conveyor.exit_status`` writes the status a step chose.
STATUS_VARIABLE = "CONVEYOR_EXIT_STATUS_FILE"


def step_command(spec: Mapping[str, Any]) -> list[str]:
    """The command line the recorder runs for a step of app sort ``spec['sort']``."""
    sort, name = spec["sort"], spec["app"]
    if sort == "command":
        return ["/bin/sh", "-c", str(spec["command"])]
    if sort == "python":
        return [sys.executable, "-m", "conveyor.tasks.builtins", "python", str(spec["uri"])]
    if name == "shell":
        return ["/bin/sh", "-c", str(spec["params"]["command"])]
    return [sys.executable, "-m", "conveyor.tasks.builtins", name]


def main() -> int:
    from conveyor.config import get_settings
    from conveyor.errors import ConveyorError
    from conveyor.repro.recorder import RunRequest, execute

    spec = json.loads(os.environ[STEP_VARIABLE])
    cwd = Path.cwd()
    status_file = cwd / ".conveyor-exit-status"
    status_file.unlink(missing_ok=True)
    params = {k: str(v) for k, v in spec["params"].items() if k != "command"}
    request = RunRequest(
        command=step_command(spec),
        cwd=cwd,
        params=params,
        inputs=list(spec.get("inputs", ())),
        outputs=list(spec.get("outputs", ())),
        name=spec["name"],
        env={STATUS_VARIABLE: str(status_file)},
        parent={"run": spec["execution"], "job": spec["task"]} if spec.get("execution") else None,
    )
    result: dict[str, Any]
    try:
        record = execute(request, get_settings())
    except ConveyorError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        result = {"run_id": None, "exit_code": 1, "status": None, "reason": str(error)}
    else:
        code = record.exit_code if record.exit_code is not None else 1
        status = status_file.read_text().strip() if status_file.is_file() else None
        result = {"run_id": record.id, "exit_code": code, "status": status or None}
    Path(spec["result"]).write_text(json.dumps(result))
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
