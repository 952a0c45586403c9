"""``conveyor reproduce --verify`` re-creates a run and proves its outputs digest by digest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.repro.conftest import Cli, git

DETERMINISTIC = """
import random, conveyor
import numpy as np
n = conveyor.param("n", 10)
data = open(conveyor.input("data/in.csv")).read()
rng = np.random.default_rng()
with open(conveyor.output("out/metrics.json"), "w") as fh:
    fh.write('{"score": %r, "draw": %r}' % (len(data) * n, float(rng.random()) + random.random()))
print(open("version.txt").read().strip())
"""


def _setup(write: Callable[[str, str], Path]) -> None:
    write("train.py", DETERMINISTIC)
    write("data/in.csv", "x\n1\n2\n")
    write("version.txt", "v1\n")


@pytest.mark.slow
def test_reproduce_rebuilds_the_environment_and_verifies(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    _setup(write)
    cli("run", "-p", "n=3", "--", "python", "train.py")
    original = cli.last_run()
    # The user moves on: the code and the data change, the input even disappears.
    write("version.txt", "v2\n")
    (cli.project / "data" / "in.csv").unlink()

    proc = cli("reproduce", original["id"][:8], "--verify")
    assert "identical" in proc.stdout
    assert "out/metrics.json" in proc.stdout
    assert "All outputs identical" in proc.stdout
    assert "v1" in proc.stdout  # the recorded code ran, not today's
    assert "Creating environment" in proc.stderr

    again = cli.last_run()
    assert again["reproduces"] == original["id"]
    assert again["params"] == original["params"]
    assert again["seed"] == original["seed"]
    # The reproduction ran in the re-created environment, not in ours.
    assert again["environment"]["executable"] != original["environment"]["executable"]
    assert again["environment"]["packages"] == original["environment"]["packages"]

    second = cli("reproduce", original["id"], "--verify")
    assert "is cached" in second.stderr


def test_reproduce_reports_a_different_output_and_exits_1(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write(
        "noisy.py",
        "import os, conveyor\n"
        "with open(conveyor.output('table.csv'), 'w') as fh:\n"
        "    fh.write('name,value\\nfixed,1\\nnoise,' + os.urandom(4).hex() + '\\n')\n",
    )
    cli("run", "--", "python", "noisy.py")
    run_id = cli.last_run()["id"]
    proc = cli("reproduce", run_id, "--verify", "--no-env", check=False)
    assert proc.returncode == 1
    assert "different" in proc.stdout
    assert "CSV differs at row 3, column(s) value" in proc.stdout
    assert "Outputs differ" in proc.stdout
    # Without --verify the difference is reported but is not an error.
    assert cli("reproduce", run_id, "--no-env", check=False).returncode == 0


def test_reproduce_uses_uncommitted_code_from_the_snapshot(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    _setup(write)
    git(cli.project, "init", "-q")
    git(cli.project, "add", ".")
    git(cli.project, "commit", "-q", "-m", "c1")
    write("version.txt", "uncommitted v1.5\n")
    cli("run", "--", "python", "train.py")
    run_id = cli.last_run()["id"]
    write("version.txt", "v3\n")
    proc = cli("reproduce", run_id, "--verify", "--no-env")
    assert "uncommitted v1.5" in proc.stdout


def test_runs_diff_names_what_changed(cli: Cli, write: Callable[[str, str], Path]) -> None:
    _setup(write)
    cli("run", "-p", "n=3", "--seed", "1", "--", "python", "train.py")
    a = cli.last_run()["id"]
    write("version.txt", "v2\n")
    cli("run", "-p", "n=4", "--seed", "2", "--", "python", "train.py")
    b = cli.last_run()["id"]
    diff = json.loads(cli("runs", "diff", a, b, "--json").stdout)
    assert {"what": "n", "a": 3, "b": 4} in diff["Params"]
    assert {"what": "seed", "a": 1, "b": 2} in diff["Seeds"]
    assert any(row["what"] == "file version.txt" for row in diff["Code"])
    assert [row["what"] for row in diff["Outputs"]] == ["out/metrics.json"]
    text = cli("runs", "diff", a, b).stdout
    assert "Params" in text
    assert "version.txt" in text
    assert "do not differ" in cli("runs", "diff", a, a).stdout


def test_reproduce_refuses_a_non_empty_folder(
    cli: Cli, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    _setup(write)
    cli("run", "--", "python", "train.py")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    proc = cli("reproduce", cli.last_run()["id"], "--dir", str(busy), check=False)
    assert proc.returncode == 2
    assert "not empty" in proc.stderr
    assert (busy / "keep.txt").read_text() == "mine"
