"""A run records only what happened: who wrote its outputs, which params and files it used."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.repro.conftest import Cli, git

WRITER = """
import sys, conveyor
n = conveyor.param("n", 0)
with open(conveyor.output("out.json"), "w") as fh:
    fh.write('{"n": %d}' % n)
print("written", flush=True)
if n == 1:
    sys.stdin.readline()  # the test says when this run may end
"""


def test_an_output_another_run_overwrote_is_flagged(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("w.py", WRITER)
    first = cli.start(
        "run", "-p", "n=1", "-o", "out.json", "--", "python", "w.py", stdin=subprocess.PIPE
    )
    assert first.stdout is not None
    assert first.stdin is not None
    assert first.stdout.readline().strip() == "written"  # run 1 has written out.json

    # A second run in the same folder, declaring the same output, writes it while run 1 works.
    second = cli("run", "-p", "n=2", "-o", "out.json", "--", "python", "w.py")
    assert "also declares the output out.json" in second.stderr
    second_run = cli.last_run()
    assert "checks" not in second_run["environment"]  # it wrote last: what it recorded is its own

    first.stdin.write("\n")
    _, err = first.communicate(timeout=120)
    runs = json.loads(cli("runs", "--json").stdout)
    first_id = next(r["id"] for r in runs if r["id"] != second_run["id"])
    first_run = cli.show(first_id)
    (out,) = [f for f in first_run["files"] if f["path"] == "out.json"]
    assert cli("artifacts", "get", out["digest"]).stdout == '{"n": 2}'  # the other run's file
    (flag,) = first_run["environment"]["checks"]["outputs"]
    assert flag["path"] == "out.json"
    assert second_run["id"][:12] in flag["reason"]
    assert "may not be this run's" in err  # said at the end of the run
    shown = cli("runs", "show", first_id).stdout
    assert "output out.json may not be this run's" in shown
    assert second_run["id"][:12] in shown


def test_a_mistyped_param_is_reported_as_unused(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("t.py", "import conveyor\nprint(conveyor.param('n_estimators', 100))\n")
    typo = cli("run", "-p", "n_estimatorz=5", "--", "python", "t.py")
    assert typo.stdout.strip() == "100"
    assert "--param n_estimatorz was given but the code never read it" in typo.stderr
    assert "did you mean n_estimators?" in typo.stderr
    a = cli.last_run()
    assert a["environment"]["checks"]["unused_params"] == ["n_estimatorz"]
    assert a["params"] == {"n_estimators": 100, "n_estimatorz": 5}
    assert "n_estimatorz = 5  (unused" in cli("runs", "show", a["id"]).stdout

    right = cli("run", "-p", "n_estimators=5", "--", "python", "t.py")
    assert "never read" not in right.stderr
    b = cli.last_run()
    assert "checks" not in b["environment"]
    diff = json.loads(cli("runs", "diff", a["id"], b["id"], "--json").stdout)
    assert {"what": "n_estimatorz", "a": "5 (unused)", "b": None} in diff["Params"]
    assert "(unused)" in cli("runs", "diff", a["id"], b["id"]).stdout


READER = """
import conveyor
print(open("secret.csv").read().strip(), len(open("big.bin").read()))
with open(conveyor.output("out.txt"), "w") as fh:
    fh.write(open("secret.csv").read())
"""


def test_undeclared_inputs_are_kept_or_named(
    cli: Cli, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("read.py", READER)
    write(".gitignore", "secret.csv\nbig.bin\n")
    write("secret.csv", "a,b\n1,2\n")
    write("big.bin", "x" * 5000)
    git(cli.project, "init", "-q")
    cli.extra_env["CONVEYOR_SNAPSHOT_LIMIT"] = "2K"

    proc = cli("run", "--", "python", "read.py")
    assert "read secret.csv, which is neither code nor a declared input; kept" in proc.stderr
    assert "read big.bin" in proc.stderr
    assert "was not kept (larger than 2.0 KB)" in proc.stderr
    run = cli.last_run()
    assert ("input", "secret.csv") in {(f["role"], f["path"]) for f in run["files"]}
    notes = {n["path"]: n["kept"] for n in run["environment"]["checks"]["undeclared_inputs"]}
    assert notes == {"secret.csv": True, "big.bin": False}  # code and outputs are not listed

    # The kept file is restored; the one that was too big is named, not a bare traceback.
    (cli.project / "secret.csv").unlink()
    (cli.project / "big.bin").unlink()
    again = cli("reproduce", run["id"], "--no-env", "--dir", str(tmp_path / "r"), check=False)
    assert again.returncode != 0
    assert "read big.bin, which was neither code nor a declared input" in again.stderr
    assert "may be for want of big.bin" in again.stderr
    assert (tmp_path / "r" / "secret.csv").read_text() == "a,b\n1,2\n"


def test_outputs_of_earlier_runs_are_not_code(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("make.py", "import conveyor\nopen(conveyor.output('out/model.bin'), 'w').write('m1')\n")
    cli("run", "--", "python", "make.py")
    producer = cli.last_run()["id"]
    cli("run", "--", "python", "make.py")
    run = cli.last_run()
    assert run["code"]["files"] == 1  # make.py only
    (excluded,) = run["code"]["excluded_outputs"]
    assert excluded["path"] == "out/model.bin"
    assert excluded["run"] == producer
    assert "out/model.bin" not in cli("artifacts", "get", run["code"]["snapshot"]).stdout
    shown = cli("runs", "show", run["id"]).stdout
    assert "Left out of the code snapshot" in shown
    assert f"out/model.bin  {excluded['digest']}  output of run {producer[:12]}" in shown

    # Once the user edits the file it is theirs again, and it is code like any other.
    (cli.project / "out" / "model.bin").write_text("hand-edited")
    cli("run", "--", "true")
    assert cli.last_run()["code"]["files"] == 2


def test_an_undeclared_input_above_the_run_folder_is_restored_in_its_place(
    cli: Cli, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("train/t.py", "print(open('../data/x.csv').read().strip())\n")
    write(".gitignore", "data/\n")
    write("data/x.csv", "a\n7\n")
    git(cli.project, "init", "-q")
    cli("run", "--", "python", "t.py", cwd=cli.project / "train")
    run = cli.last_run()
    assert ("input", "../data/x.csv") in {(f["role"], f["path"]) for f in run["files"]}

    (cli.project / "data" / "x.csv").unlink()
    again = cli("reproduce", run["id"], "--no-env", "--dir", str(tmp_path / "r"))
    assert "a\n7" in again.stdout
    assert (tmp_path / "r" / "data" / "x.csv").read_text() == "a\n7\n"
