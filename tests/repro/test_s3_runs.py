"""Runs, reproductions and the ``artifacts`` commands with the artifacts in an S3 bucket."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.s3 import S3ArtifactStore
from tests.repro.conftest import Cli
from tests.repro.test_reproduce import DETERMINISTIC
from tests.s3_server import SeaweedFS

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_cli(cli: Cli, s3_url: str, seaweedfs: SeaweedFS) -> Cli:
    cli.extra_env.update(
        {
            "CONVEYOR_ARTIFACT_ROOT": s3_url,
            "CONVEYOR_S3_ENDPOINT_URL": seaweedfs.endpoint,
            "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        }
    )
    return cli


def bucket_store(cli: Cli) -> S3ArtifactStore:
    store = ArtifactStore.from_settings(Settings.from_env(cli.env()))
    assert isinstance(store, S3ArtifactStore)
    return store


def test_a_run_reproduces_and_verifies_with_its_artifacts_in_the_bucket(
    s3_cli: Cli, write: Callable[[str, str], Path]
) -> None:
    cli = s3_cli
    write("train.py", DETERMINISTIC)
    write("data/in.csv", "x\n1\n2\n")
    write("version.txt", "v1\n")
    cli("run", "-p", "n=3", "--", "python", "train.py")
    original = cli.last_run()
    write("version.txt", "v2\n")
    (cli.project / "data" / "in.csv").unlink()  # restored from the bucket by reproduce

    proc = cli("reproduce", original["id"][:8], "--verify", "--no-env")

    assert "All outputs identical" in proc.stdout
    assert "v1" in proc.stdout
    store = bucket_store(cli)
    stored = {info.digest for info in store.list()}
    assert {f["digest"] for f in original["files"]} <= stored
    assert original["code"]["snapshot"] in stored
    assert not (cli.home / "artifacts").exists()  # nothing stored locally
    listed = cli("artifacts", "ls").stdout
    assert original["files"][0]["digest"] in listed
    assert "Checked" in cli("artifacts", "verify").stdout
    assert "Would remove 0 artifacts" in cli("artifacts", "gc", "--dry-run").stdout


def test_an_object_changed_in_the_bucket_is_reported_by_verify(
    s3_cli: Cli, write: Callable[[str, str], Path]
) -> None:
    cli = s3_cli
    write("make.py", "open('o.txt', 'w').write('good output\\n')\n")
    cli("run", "--output", "o.txt", "--", "python", "make.py")
    run = cli.last_run()
    digest = run["files"][0]["digest"]
    store = bucket_store(cli)
    store._client.put_object(Bucket=store.bucket, Key=store._key(digest), Body=b"bad output\n")

    proc = cli("artifacts", "verify", check=False)
    assert proc.returncode == 1
    assert f"DAMAGED  {digest}" in proc.stdout
    assert run["id"][:12] in proc.stdout
    got = cli("artifacts", "get", digest, check=False)
    assert got.returncode == 1
    assert "is corrupted" in got.stderr
    assert "bad output" not in got.stdout
    assert "Traceback" not in got.stderr

    repaired = cli("artifacts", "verify", "--repair")
    assert "repaired from" in repaired.stdout
    assert cli("artifacts", "get", digest).stdout == "good output\n"


def test_a_model_saved_by_a_run_is_served_from_the_bucket(
    s3_cli: Cli, write: Callable[[str, str], Path]
) -> None:
    from conveyor.repro.lookup import model_from_run

    cli = s3_cli
    write(
        "train.py",
        "import conveyor\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "conveyor.save_model(LogisticRegression(max_iter=300).fit(X, y), 'model', example=X)\n",
    )
    cli("run", "--", "python", "train.py")
    run_id = json.loads(cli("runs", "--json").stdout)[0]["id"]

    found = model_from_run(f"run:{run_id[:8]}/model", Settings.from_env(cli.env()))

    assert found.run_id == run_id
    assert found.path.is_file()
    assert bucket_store(cli).exists(found.digest)


@pytest.mark.parametrize("fault", ["silent", "credentials"])
def test_store_faults_are_clear_errors_without_a_traceback(
    s3_cli: Cli, write: Callable[[str, str], Path], fault: str
) -> None:
    cli = s3_cli
    if fault == "silent":
        cli.extra_env["CONVEYOR_S3_ENDPOINT_URL"] = "http://127.0.0.1:9"
        expected = "does not answer"
    else:
        cli.extra_env["AWS_SECRET_ACCESS_KEY"] = "wrong"
        expected = "refused the request"
    write("make.py", "print('hi')\n")

    for args in (("artifacts", "ls"), ("run", "--", "python", "make.py")):
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        assert expected in proc.stderr, (args, proc.stderr)
        assert cli.extra_env["CONVEYOR_ARTIFACT_ROOT"] in proc.stderr
        assert "Traceback" not in proc.stderr
