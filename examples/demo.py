"""The README demo: record data preparation and training, reproduce and verify, then serve.

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


def serve_and_predict(run_id: str) -> None:
    """Serve the run's model over HTTP, send it one row of the test set, stop it."""
    import csv
    import re
    import signal
    import urllib.request

    # Tree ensembles hold sklearn's Tree type, which skops trusts only when the operator says so.
    trusted = "sklearn.tree._tree.Tree"
    args = ["serve", f"run:{run_id}/model", "--port", "0"]
    print(f"\n$ CONVEYOR_TRUSTED_TYPES={trusted} conveyor {' '.join(args)} &", flush=True)
    env = dict(os.environ, CONVEYOR_TRUSTED_TYPES=trusted)
    server = subprocess.Popen(
        [str(BIN / "conveyor"), *args], cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        announcement = server.stdout.readline()
        print(announcement, end="", flush=True)
        found = re.search(r"http://127\.0\.0\.1:\d+", announcement)
        if found is None:
            sys.exit("demo: conveyor serve did not start")
        with (PROJECT / "data" / "test.csv").open() as fh:
            row = next(csv.DictReader(fh))
        truth = row.pop("diagnosis")
        record = {name: float(value) for name, value in row.items()}
        body = json.dumps([record]).encode()
        print(f"\n$ curl -s {found.group(0)}/predict -d '[{{...30 features...}}]'", flush=True)
        request = urllib.request.Request(
            f"{found.group(0)}/predict", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
            lineage = response.headers.get("x-model-run-id")
        print(json.dumps(answer, indent=2))
        print(f"(true diagnosis: {truth}; x-model-run-id: {lineage})")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


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
    serve_and_predict(train_id)
    print(
        f"\nDone. Try `conveyor runs show {train_id}`, `conveyor runs diff` on two runs, "
        f"or `conveyor serve run:{train_id}/model`."
    )


if __name__ == "__main__":
    main()
