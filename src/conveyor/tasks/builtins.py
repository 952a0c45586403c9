"""The built-in task apps and the Python-function app, as the command a recorded run executes.

``python -m conveyor.tasks.builtins timestamp`` prints the time;
``... sql`` runs a query file against a URL; ``... python mypkg.jobs:train``
imports the function and calls it with the step's params as keyword
arguments. A function's return value is its result: ``None`` or ``0`` succeed,
another int is the exit code, a string is the exit status (as
``conveyor.exit_status`` sets it).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _params() -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(os.environ.get("CONVEYOR_PARAMS", "{}")).items()}


def _set_status(status: str) -> None:
    target = os.environ.get("CONVEYOR_EXIT_STATUS_FILE")
    if target:
        Path(target).write_text(status)


def _timestamp(params: dict[str, str]) -> int:
    print(time.strftime(params.get("format", "%Y-%m-%d %H:%M:%S")))
    return 0


def _sql(params: dict[str, str]) -> int:
    import sqlalchemy as sa

    text = Path(params["file"]).read_text()
    engine = sa.create_engine(params["url"])
    try:
        with engine.begin() as conn:
            for statement in (s.strip() for s in text.split(";")):
                if statement:
                    result = conn.exec_driver_sql(statement)
                    if result.returns_rows:
                        for row in result:
                            print("\t".join(str(v) for v in row))
    finally:
        engine.dispose()
    return 0


def _python(uri: str, params: dict[str, str]) -> int:
    from conveyor.tasks.catalogue import parse_python_uri

    module_name, function_name = parse_python_uri(uri)
    sys.path.insert(0, os.getcwd())  # the app's folder is the step's working folder
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**params)
    if isinstance(result, str):
        _set_status(result)
        return 0
    return int(result or 0)


def main(argv: list[str]) -> int:
    params = _params()
    if argv[:1] == ["timestamp"]:
        return _timestamp(params)
    if argv[:1] == ["sql"]:
        return _sql(params)
    if argv[:1] == ["python"] and len(argv) == 2:
        return _python(argv[1], params)
    print(f"conveyor.tasks.builtins: unknown app {argv!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
