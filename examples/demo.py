"""The README demo: record, reproduce and verify, serve, push, stream, and a composed task.

Run with ``make demo`` (or ``.venv/bin/python examples/demo.py``). Everything is
recorded in CONVEYOR_HOME (default ~/.conveyor), so ``conveyor runs`` shows
the runs afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent / "diagnosis"
BIN = Path(sys.executable).parent

#: The registered model the demo serves. Its skops file holds sklearn's Tree type, which
#: skops trusts only when told: the run that saved it recorded that, so no operator setting
#: is needed when it is served through the registry (trust by provenance).
MODEL = "models:/diagnosis@champion"


def conveyor(*args: str) -> str:
    """Run one conveyor command as a user would type it, echoing it first."""
    print(f"\n$ conveyor {' '.join(args)}", flush=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # Free ports unless the user chose some: another platform may hold the defaults.
    env.setdefault("CONVEYOR_API", "127.0.0.1:0")
    env.setdefault("CONVEYOR_ROUTER", "127.0.0.1:0")
    # The stream apps read the demo's inbox and write its results: the platform allows them
    # files in the data folder and in the roots the operator lists, here the demo's folder.
    env["CONVEYOR_STREAM_ROOTS"] = str(PROJECT)
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


def predict(url: str) -> None:
    """POST the first row of the test set to ``url`` and show the answer."""
    import csv
    import urllib.request

    with (PROJECT / "data" / "test.csv").open() as fh:
        row = next(csv.DictReader(fh))
    truth = row.pop("diagnosis")
    record = {name: float(value) for name, value in row.items()}
    body = json.dumps([record]).encode()
    print(f"\n$ curl -s {url} -d '[{{...30 features...}}]'", flush=True)
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
        lineage = response.headers.get("x-model-run-id")
    print(json.dumps(answer, indent=2))
    print(f"(true diagnosis: {truth}; x-model-run-id: {lineage})")


def push_and_route() -> None:
    """Start the platform, push the model with two instances, call it through the router."""
    manifest = PROJECT / "conveyor.yml"
    manifest.write_text(
        f"applications:\n  - name: diagnosis\n    model: {MODEL}\n    instances: 2\n"
        "    follow-alias: true\n"
    )
    print(f"\n$ cat {manifest.name}\n{manifest.read_text()}", end="", flush=True)
    print(f"\n$ export CONVEYOR_STREAM_ROOTS={PROJECT}   # files the stream apps may use")
    started = conveyor("up")
    router = started.split("router:", 1)[1].split()[0]
    try:
        conveyor("push")
        conveyor("apps")
        predict(f"{router}/diagnosis/predict")
        conveyor("app", "diagnosis")
        stream_and_tap()
        composed_task()
    finally:
        conveyor("down")


def stream_and_tap() -> None:
    """Score the test set as a stream, micro-batch by micro-batch; a tap keeps the results."""
    import shutil
    import time

    inbox, scored = PROJECT / "inbox", PROJECT / "scored.jsonl"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir()
    scored.unlink(missing_ok=True)
    if os.geteuid() == 0:
        # As root the platform runs each stream app as a uid of its own: the folder the
        # file source renames in, and the file the tap appends to, must let them write.
        inbox.chmod(0o777)
        scored.touch(mode=0o666)
        scored.chmod(0o666)
    for name in ("diagnose", "scored"):  # left by an earlier demo
        subprocess.run(
            [str(BIN / "conveyor"), "stream", "destroy", name], capture_output=True, check=False
        )
    conveyor(
        "stream", "create", "diagnose", "--deploy", "--definition",
        f"file --directory={inbox} --format=csv | score --model={MODEL} | log",
    )  # fmt: skip
    conveyor(
        "stream", "create", "scored", "--deploy", "--definition",
        f":diagnose.score > file --path={scored}",
    )  # fmt: skip
    rows = sum(1 for _ in (PROJECT / "data" / "test.csv").open()) - 1
    print(f"\n$ cp data/test.csv inbox/   # {rows} patients", flush=True)
    shutil.copy(PROJECT / "data" / "test.csv", inbox / "test.csv")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = scored.read_text().count("\n") if scored.exists() else 0
        if done >= rows:
            break
        time.sleep(0.2)
    conveyor("stream", "info", "diagnose")
    results = [json.loads(line) for line in scored.read_text().splitlines()]
    right = sum(r["prediction"] == r["diagnosis"] for r in results)
    print(f"\n$ wc -l {scored.name}\n{len(results)} {scored.name}")
    print(f"(the tap kept every scored row: {right} of {len(results)} predictions match the truth)")
    if len(results) < rows:
        sys.exit(f"the stream scored {len(results)} of {rows} rows; see `conveyor stream info`")


def composed_task() -> None:
    """The batch half: prepare, two models side by side, evaluate on Dask; relaunch; schedule."""
    for leftover in (("schedule", "destroy", "nightly-2am"), ("destroy", "nightly")):
        subprocess.run(  # left by an earlier demo (the registry outlives it)
            [str(BIN / "conveyor"), "task", *leftover], capture_output=True, check=False
        )
    for app, script in (
        ("prepare", "prepare.py"),
        ("train", "train.py"),
        ("forest", "forest.py"),
        ("evaluate", "evaluate.py"),
    ):
        conveyor(
            "task", "app", "register", "--name", app, "--path", ".", "--command", f"python {script}"
        )
    data = "@prepare/data/train.csv,@prepare/data/test.csv"
    definition = (
        f"prepare && <train-gbm: train --input={data} || train-rf: forest --input={data}>"
        " && evaluate --input=@prepare/data/test.csv"
    )
    conveyor("task", "create", "nightly", "--definition", definition)
    first = conveyor(
        "task", "launch", "nightly", "--properties", "app.train-gbm.n_estimators=150", "--wait"
    )
    execution = first.split()[1]
    conveyor("task", "execution", "log", execution, "--step", "evaluate")
    # Nothing changed: every step's run is reused (the timestamp of a real clock would not be).
    conveyor(
        "task", "launch", "nightly", "--properties", "app.train-gbm.n_estimators=150", "--wait"
    )
    conveyor(
        "task",
        "schedule",
        "create",
        "nightly-2am",
        "--task",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/London",
        "--properties",
        "app.train-gbm.n_estimators=150",
    )
    conveyor("task", "schedule", "list")


def register(run_id: str) -> None:
    """Register the run's model as a version of ``diagnosis`` and make it the champion."""
    registered = conveyor("models", "register", f"run:{run_id}/model", "--name", "diagnosis")
    found = re.search(r"diagnosis version (\d+)", registered)
    if found is None:
        sys.exit("demo: conveyor models register did not say the version")
    conveyor("models", "alias", "diagnosis", "champion", found.group(1))
    conveyor("models", "show", "diagnosis")


def serve_and_predict() -> None:
    """Serve the champion over HTTP, send it one row of the test set, stop it."""
    import signal

    args = ["serve", MODEL, "--port", "0"]
    print(f"\n$ conveyor {' '.join(args)} &", flush=True)
    server = subprocess.Popen(
        [str(BIN / "conveyor"), *args], cwd=PROJECT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        announcement = server.stdout.readline()
        print(announcement, end="", flush=True)
        found = re.search(r"http://127\.0\.0\.1:\d+", announcement)
        if found is None:
            sys.exit("demo: conveyor serve did not start")
        predict(found.group(0) + "/predict")
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
    register(train_id)
    serve_and_predict()
    push_and_route()
    print(
        f"\nDone. Try `conveyor runs show {train_id}`, `conveyor runs diff` on two runs, "
        f"`conveyor serve {MODEL}`, or `conveyor up` to bring the diagnosis app "
        "back (its desired state is kept)."
    )


if __name__ == "__main__":
    main()
