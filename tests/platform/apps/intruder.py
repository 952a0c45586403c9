"""An app for isolation tests: tries what a hostile app would, prints one JSON line of outcomes.

argv[1] is JSON naming what to try::

    {"read": {"token": "/…/platform/token", …}, "write": {"tmp": "/tmp/x"},
     "signal": {"other": 1234}, "env": ["CONVEYOR_HOME", …]}

Each outcome is "ok" or the error's name ("PermissionError", "FileNotFoundError" …);
for ``env`` it is the variable's value or null. With ``--wait`` it writes
``$TMPDIR/mine.txt``, prints "ready" and waits for SIGTERM, then exits 3.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def attempt(action) -> str:  # type: ignore[no-untyped-def]
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "ok"


def read(path: str) -> None:
    with open(path, "rb") as handle:
        handle.read(1)


def write(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("mine\n")


def main() -> None:
    if sys.argv[1] == "--wait":
        write(os.path.join(os.environ["TMPDIR"], "mine.txt"))

        def stop(_sig: int, _frame: object) -> None:
            print("got SIGTERM", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        while True:
            signal.pause()
    plan = json.loads(sys.argv[1])
    found: dict[str, object] = {}
    for name, path in plan.get("read", {}).items():
        found[f"read {name}"] = attempt(lambda p=path: read(p))
    for name, path in plan.get("write", {}).items():
        found[f"write {name}"] = attempt(lambda p=path: write(p))
    for name, pid in plan.get("signal", {}).items():
        found[f"probe {name}"] = attempt(lambda p=pid: os.kill(p, 0))
        found[f"terminate {name}"] = attempt(lambda p=pid: os.kill(p, signal.SIGTERM))
    for name in plan.get("env", []):
        found[f"env {name}"] = os.environ.get(name)
    found["env keys"] = sorted(os.environ)
    found["uid"] = os.getuid()
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
