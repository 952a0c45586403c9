"""``conveyor run --experiment``, ``runs --where``, ``runs tag|untag|delete|restore`` and gc."""

from __future__ import annotations

import json

from conveyor.store.artifacts import ArtifactStore
from tests.repro.conftest import Cli

TRAIN = """\
import conveyor
trees = conveyor.param("trees", 100)
conveyor.log_metric("auc", 0.8 + trees / 10000)
open("model.txt", "w").write(f"model with {trees} trees")
"""


def _listed(cli: Cli, *args: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(cli("runs", "--json", *args).stdout)
    return data


def test_experiments_tags_and_a_search_select_runs(cli: Cli) -> None:
    (cli.project / "train.py").write_text(TRAIN)
    (cli.project / "data.csv").write_text("a,b\n1,2\n")
    cli("run", "-p", "trees=100", "-i", "data.csv", "--", "python", "train.py")
    small = cli.last_run()
    cli("run", "-e", "churn", "-p", "trees=300", "-i", "data.csv", "--", "python", "train.py")
    big = cli.last_run()
    assert small["experiment"] == cli.project.name  # the folder's name by default
    assert big["experiment"] == "churn"

    tagged = cli("runs", "tag", big["id"][:8], "stage=prod", "owner=ana")
    assert "stage=prod" in tagged.stdout
    where = "params.trees >= 200 and metrics.auc > 0.81 and tags.stage = 'prod'"
    assert [r["id"] for r in _listed(cli, "--where", where)] == [big["id"]]
    assert [r["id"] for r in _listed(cli, "--experiment", "churn")] == [big["id"]]
    cli.extra_env["COLUMNS"] = "200"  # a wide terminal: no column is cut
    table = cli("runs", "--where", "tags.owner = 'ana'").stdout
    assert "owner=ana" in table
    assert "churn" in table
    assert "No runs match." in cli("runs", "--where", "metrics.auc > 5").stdout

    cli("runs", "untag", big["id"], "owner")
    assert cli.show(big["id"])["tags"] == {"stage": "prod"}
    missing = cli("runs", "untag", big["id"], "owner", check=False)
    assert missing.returncode == 2
    assert "has no tag 'owner'" in missing.stderr


def test_a_malformed_search_exits_2_with_a_caret(cli: Cli) -> None:
    proc = cli("runs", "--where", "metrics.auc > 0.9 and", check=False)
    assert proc.returncode == 2
    assert "search error at position 21: expected an attribute" in proc.stderr
    assert "  metrics.auc > 0.9 and\n                       ^" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad_tag = cli("runs", "tag", "abc", "novalue", check=False)
    assert bad_tag.returncode == 2
    assert "'novalue' is not KEY=VALUE" in bad_tag.stderr


def test_deleted_runs_are_restorable_until_gc_removes_what_only_they_used(cli: Cli) -> None:
    (cli.project / "train.py").write_text(TRAIN)
    (cli.project / "data.csv").write_text("a,b\n1,2\n")
    cli("run", "-p", "trees=100", "-i", "data.csv", "-o", "model.txt", "--", "python", "train.py")
    kept = cli.last_run()
    cli("run", "-p", "trees=7", "-i", "data.csv", "-o", "model.txt", "--", "python", "train.py")
    gone = cli.last_run()
    store = ArtifactStore(cli.home / "artifacts")
    shared = next(f["digest"] for f in gone["files"] if f["role"] == "input")
    only_gone = next(f["digest"] for f in gone["files"] if f["role"] == "output")

    assert "Deleted run" in cli("runs", "delete", gone["id"]).stdout
    assert [r["id"] for r in _listed(cli)] == [kept["id"]]
    assert [r["id"] for r in _listed(cli, "--deleted")] == [gone["id"]]
    assert "Restored run" in cli("runs", "restore", gone["id"][:10]).stdout
    assert len(_listed(cli)) == 2
    again = cli("runs", "restore", gone["id"], check=False)
    assert again.returncode == 2
    assert "is not deleted" in again.stderr

    cli("runs", "delete", gone["id"])
    assert store.exists(only_gone)  # nothing goes before gc
    report = cli("artifacts", "gc").stdout
    assert "Purged 1 deleted run(s)." in report
    assert not store.exists(only_gone)
    assert store.exists(shared)  # the kept run reads it too
    assert cli("runs", "show", gone["id"], check=False).returncode != 0
    assert cli("reproduce", kept["id"], "--verify", "--no-env").returncode == 0
