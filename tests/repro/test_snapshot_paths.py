"""Snapshots and reproductions stay inside their folders: symlinks are links, ``../`` is refused."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.repro.conftest import Cli, git


def test_symlinks_are_recorded_as_links_and_never_followed_out(
    cli: Cli, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("private to this machine\n")
    write("train.py", "print(open('alias.py').read().count('print'))\n")
    write("sub/hostname", "tracked copy\n")
    git(cli.project, "init", "-q")
    git(cli.project, "add", ".")
    git(cli.project, "commit", "-q", "-m", "c1")
    # The tracked folder is replaced by a link out of the tree; a file link is added.
    (cli.project / "sub" / "hostname").unlink()
    (cli.project / "sub").rmdir()
    (cli.project / "sub").symlink_to(outside)
    (cli.project / "alias.py").symlink_to("train.py")

    proc = cli("run", "--", "python", "train.py")
    assert f"not in the code snapshot: sub/hostname (under the symbolic link sub -> {outside})" in (
        proc.stderr
    )
    run = cli.last_run()
    manifest = json.loads(cli("artifacts", "get", run["code"]["snapshot"]).stdout)
    assert [f["path"] for f in manifest["files"]] == ["train.py"]
    assert manifest["links"] == [
        {"path": "alias.py", "target": "train.py"},
        {"path": "sub", "target": str(outside)},
    ]
    assert "private to this machine" not in json.dumps(manifest)
    assert "sub/hostname" in cli("runs", "show", run["id"]).stdout  # what was skipped is said

    work = tmp_path / "again"
    cli("reproduce", run["id"], "--no-env", "--dir", str(work))
    assert os.readlink(work / "alias.py") == "train.py"
    assert os.readlink(work / "sub") == str(outside)


def test_links_outside_git_are_kept_too(cli: Cli, write: Callable[[str, str], Path]) -> None:
    write("data/x.csv", "a\n")
    (cli.project / "current").symlink_to("data")
    cli("run", "--", "true")
    code = cli.last_run()["code"]
    assert code["files"] == 1
    assert code["links"] == 1


def test_reproduce_refuses_an_input_path_that_leaves_its_folder(
    cli: Cli, write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write("t.py", "print(open('data.csv').read())\n")
    write("data.csv", "a\n1\n")
    cli("run", "--input", "data.csv", "--", "python", "t.py")
    run_id = cli.last_run()["id"]
    # A damaged (or hostile) registry records the input as "../escaped.txt".
    with sqlite3.connect(cli.home / "registry.db") as db:
        db.execute("UPDATE files SET path = '../escaped.txt' WHERE role = 'input'")

    proc = cli("reproduce", run_id, "--no-env", "--dir", str(tmp_path / "r"), check=False)
    assert proc.returncode == 1
    assert "'../escaped.txt'" in proc.stderr
    assert "outside the reproduction's folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "escaped.txt").exists()
