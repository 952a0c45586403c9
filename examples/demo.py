"""The README demo: record a data-preparation run and a training run, then reproduce and verify.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py``). Everything is
recorded in CONVEYOR_HOME (default ~/.conveyor), so ``conveyor runs`` shows
the runs afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent / "diagnosis"
BIN = Path(sys.executable).parent


def conveyor(*args: str) -> str:
    """Run one conveyor command as a user would type it, echoing it first."""
    print(f"\n$ conveyor {' '.join(args)}", flush=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(BIN / "conveyor"), *args],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        sys.exit(f"demo: `conveyor {' '.join(args)}` failed with exit status {proc.returncode}")
    return proc.stdout


def main() -> None:
    conveyor("run", "--name", "prepare", "--", "python", "prepare.py")
    conveyor(
        "run",
        "--name",
        "train",
        "--param",
        "n_estimators=200",
        "--input",
        "data/train.csv",
        "--",
        "python",
        "train.py",
    )
    listing = conveyor("runs", "--limit", "5", "--json")
    train_id = json.loads(listing)[0]["id"][:12]
    conveyor("runs")
    conveyor("runs", "show", train_id)
    conveyor("reproduce", train_id, "--verify")
    print(
        f"\nDone. The model is at {PROJECT / 'outputs' / 'model.skops'}; "
        f"try `conveyor runs show {train_id}` or `conveyor runs diff` on two runs."
    )


if __name__ == "__main__":
    main()
