"""``conveyor run`` records code, params, seeds, metrics, inputs, outputs and environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.repro.conftest import Cli, git

TRAIN = """
import random
import conveyor
import numpy as np

n = conveyor.param("n_estimators", 100)
lr = conveyor.param("lr", 0.1)
rows = open(conveyor.input("data/train.csv")).read().splitlines()
conveyor.log_metric("rows", len(rows))
for step in range(3):
    conveyor.log_metric("loss", 1.0 / (step + 1), step=step)
values = [random.random(), float(np.random.rand()), float(np.random.default_rng().random())]
with open(conveyor.output("out/result.json"), "w") as fh:
    fh.write(repr({"n": n, "lr": lr, "values": values}))
print("trained", n)
"""


def test_run_records_everything(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("train.py", TRAIN)
    write("data/train.csv", "a,b\n1,2\n3,4\n")
    proc = cli("run", "--param", "n_estimators=200", "--seed", "42", "--", "python", "train.py")
    assert "trained 200" in proc.stdout  # the command's output is shown live
    assert "FINISHED" in proc.stderr

    run = cli.last_run()
    assert run["status"] == "FINISHED"
    assert run["exit_code"] == 0
    assert run["seed"] == 42
    assert run["params"] == {"n_estimators": 200, "lr": 0.1}
    assert run["metrics"] == {"rows": 3.0, "loss": 1.0 / 3}
    assert [m["step"] for m in run["metric_history"] if m["key"] == "loss"] == [0, 1, 2]
    files = {(f["role"], f["path"]) for f in run["files"]}
    assert ("input", "data/train.csv") in files
    assert ("output", "out/result.json") in files
    env = run["environment"]
    assert env["python"].startswith("3.")
    assert env["package_count"] > 10
    assert env["threads"]["OMP_NUM_THREADS"]
    assert any(lib["internal_api"] for lib in env["blas"])  # numpy's BLAS, seen by threadpoolctl
    assert env["host"]["cpu"]["count"] >= 1
    assert run["code"]["files"] == 2  # train.py and data/train.csv: outputs came after
    assert run["stdout"] is not None

    # The package list names this very interpreter's numpy.
    packages = cli("artifacts", "get", env["packages"]).stdout
    assert '"name":"numpy"' in packages


def test_same_seed_same_results_and_different_seed_differs(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", TRAIN)
    write("data/train.csv", "a\n1\n")
    results = []
    for seed in ("7", "7", "8"):
        cli("run", "--seed", seed, "--", "python", "train.py")
        results.append((cli.project / "out" / "result.json").read_text())
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_hash_seed_is_fixed(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("h.py", "print(hash('conveyor'))\n")
    a = cli("run", "--seed", "3", "--", "python", "h.py").stdout
    b = cli("run", "--seed", "3", "--", "python", "h.py").stdout
    assert a == b


def test_git_commit_and_uncommitted_changes_are_recorded(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", "print('v1')\n")
    write(".gitignore", "ignored/\n")
    git(cli.project, "init", "-q", "-b", "main")
    git(cli.project, "add", ".")
    git(cli.project, "commit", "-q", "-m", "first")
    write("train.py", "print('v2 uncommitted')\n")
    write("notes.txt", "untracked but not ignored\n")
    write("ignored/big.bin", "x" * 1000)

    cli("run", "--", "python", "train.py")
    run = cli.last_run()
    code = run["code"]
    assert code["commit"] == git(cli.project, "rev-parse", "HEAD").strip()
    assert code["branch"] == "main"
    assert code["dirty"] is True
    assert code["files"] == 3  # .gitignore, train.py, notes.txt; the ignored folder is not kept

    # The snapshot holds the uncommitted text, not the committed one.
    manifest = cli("artifacts", "get", code["snapshot"]).stdout
    assert "notes.txt" in manifest
    assert "ignored/big.bin" not in manifest
    # The uncommitted changes to tracked files are kept as a diff against the commit.
    diff = cli("artifacts", "get", code["diff"]).stdout
    assert "-print('v1')" in diff
    assert "+print('v2 uncommitted')" in diff
    cli("artifacts", "gc")  # the run still uses its diff: gc keeps it
    assert cli("artifacts", "get", code["diff"]).stdout == diff


def test_failing_command_is_recorded_with_its_exit_status(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("bad.py", "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)\n")
    proc = cli("run", "--", "python", "bad.py", check=False)
    assert proc.returncode == 3
    run = cli.last_run()
    assert run["status"] == "FAILED"
    assert run["exit_code"] == 3
    assert "about to fail" in cli("artifacts", "get", run["stderr"]).stdout


def test_non_python_command(cli: Cli) -> None:
    proc = cli("run", "--output", "o.txt", "--", "sh", "-c", "echo hi > o.txt")
    assert "FINISHED" in proc.stderr
    run = cli.last_run()
    assert run["files"][0]["path"] == "o.txt"
    assert run["environment"]["python_command"] is False


def test_api_outside_conveyor_run_records_a_run(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write(
        "plain.py",
        "import conveyor\nconveyor.log_metric('auc', 0.5)\nprint(conveyor.param('k', 3))\n",
    )
    proc = cli.python("plain.py")
    assert proc.stdout.strip() == "3"
    run = cli.last_run()
    assert run["status"] == "FINISHED"
    assert run["metrics"] == {"auc": 0.5}
    assert run["params"] == {"k": 3}


def test_api_outside_conveyor_run_starts_with_the_process(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    import json

    # The script works (here: imports) before its first API call; the run covers that too.
    write(
        "late.py",
        "import time, conveyor, json\n"
        "first_call = time.time()\n"
        "conveyor.log_metric('auc', 0.5)\n"
        "print(json.dumps(first_call))\n",
    )
    first_call = json.loads(cli.python("late.py").stdout)
    run = cli.last_run()
    assert run["started_at"] < first_call
    assert run["duration"] > first_call - run["started_at"]


MODEL = """
import conveyor
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=500).fit(X, y)
conveyor.save_model(model, "iris", path="out/iris.skops", example=X.head())
"""


def test_saved_model_is_recorded_and_byte_reproducible(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("model.py", MODEL)
    digests = []
    for _ in range(2):
        cli("run", "--", "python", "model.py")
        run = cli.last_run()
        (model,) = run["models"]
        assert model["name"] == "iris"
        assert model["format"] == "sklearn"
        assert model["path"] == "out/iris.skops"
        assert [f["name"] for f in model["signature"]["inputs"]][:1] == ["sepal length (cm)"]
        assert model["signature"]["task"] == "classification"
        digests.append(model["digest"])
    assert digests[0] == digests[1]  # the same model gives the same bytes

    from conveyor.models import load_model

    loaded = load_model(cli.project / "out" / "iris.skops")
    assert loaded.signature.classes == (0, 1, 2)


def test_two_runs_at_the_same_time_are_both_recorded(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    import json
    import subprocess
    import sys

    write("m.py", "import conveyor, sys\nconveyor.log_metric('x', float(sys.argv[1]))\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor", "run", "--", "python", "m.py", str(i)],
            cwd=cli.project,
            env=cli.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    runs = json.loads(cli("runs", "--json").stdout)
    assert sorted(r["metrics"]["x"] for r in runs) == [0.0, 1.0, 2.0]
    assert {r["status"] for r in runs} == {"FINISHED"}
