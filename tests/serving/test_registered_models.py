"""The model registry as a user drives it: train in a run, register, alias, serve models:/.

Models conveyor.save_model wrote are served with no CONVEYOR_TRUSTED_TYPES
(trust by provenance): a scikit-learn Pipeline with a ColumnTransformer needs
``numpy.dtype``, a gradient-boosting model ``sklearn.tree._tree.Tree``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.trained_models import TRAIN

from .test_cli_serve import CONVEYOR, _env, _start, _stop

pytestmark = pytest.mark.slow


ROW = {"sex": "f", "age": 41.0, "bp": 135.0}


def _conveyor(env: dict[str, str], *args: str, cwd: Path | None = None, check: bool = True) -> Any:
    done = subprocess.run(
        [*CONVEYOR, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"conveyor {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """A home with one run that saved ``pipeline`` and ``trees``; (env, run id)."""
    tmp_path = tmp_path_factory.mktemp("registered")
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    env = _env(tmp_path)  # no CONVEYOR_TRUSTED_TYPES: provenance is the only trust
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    _conveyor(env, "run", "--", "python", "train.py", cwd=project)
    run_id = json.loads(_conveyor(env, "runs", "--json").stdout)[0]["id"]
    env["PROJECT"] = str(project)
    return env, run_id


def test_register_alias_list_show_and_versions(trained: tuple[dict[str, str], str]) -> None:
    env, run_id = trained
    first = _conveyor(env, "models", "register", f"run:{run_id[:8]}/pipeline", "--name", "dx")
    assert "Registered dx version 1" in first.stdout
    again = _conveyor(env, "models", "register", f"run:{run_id}/pipeline", "--name", "dx")
    assert "already dx version 1" in again.stdout
    second = _conveyor(env, "models", "register", f"run:{run_id}/trees", "--name", "dx")
    assert "Registered dx version 2" in second.stdout
    assert "-> version 1" in _conveyor(env, "models", "alias", "dx", "champion", "1").stdout

    # Version 2 takes other inputs: apps following the alias could not serve their clients.
    refused = _conveyor(env, "models", "alias", "dx", "champion", "2", check=False)
    assert refused.returncode != 0
    assert "input 'sex' removed" in refused.stderr
    assert "--force" in refused.stderr
    forced = _conveyor(env, "models", "alias", "dx", "champion", "2", "--force")
    assert "(was version 1)" in forced.stdout
    _conveyor(env, "models", "alias", "dx", "champion", "1", "--force")

    listed = json.loads(_conveyor(env, "models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in listed] == [
        ("dx", 2, {"champion": 1})
    ]
    shown = json.loads(_conveyor(env, "models", "show", "dx", "--json").stdout)
    assert [v["source"] for v in shown["versions"]] == [
        f"run:{run_id}/pipeline",
        f"run:{run_id}/trees",
    ]
    assert shown["versions"][0]["trusted_types"] == ["numpy.dtype"]
    assert shown["versions"][1]["trusted_types"] == ["sklearn.tree._tree.Tree"]
    table = _conveyor(env, "models", "versions", "dx").stdout
    assert "champion" in table
    assert "sklearn" in table

    unknown = _conveyor(env, "models", "show", "dxx", check=False)
    assert unknown.returncode != 0
    assert "(models: dx)" in unknown.stderr


def test_serve_registered_models_trusting_what_their_run_recorded(
    trained: tuple[dict[str, str], str],
) -> None:
    env, run_id = trained
    _conveyor(env, "models", "register", f"run:{run_id}/pipeline", "--name", "sv")
    _conveyor(env, "models", "register", f"run:{run_id}/trees", "--name", "sv")
    _conveyor(env, "models", "alias", "sv", "champion", "1")

    running = _start(["models:/sv@champion"], env)
    try:
        r = httpx.post(f"{running.base}/predict", json=[ROW, {**ROW, "age": None}])
        assert r.status_code == 200, r.text
        assert [row["label"] for row in r.json()] == [1, 1]
        assert r.headers["x-model-run-id"] == run_id
        assert r.headers["x-model-version"] == "sv/1"
    finally:
        assert _stop(running, signal.SIGTERM) == 0

    running = _start(["models:/sv/2"], env)
    try:
        r = httpx.post(f"{running.base}/predict", json=[{"age": 41.0, "bp": 135.0}])
        assert r.status_code == 200, r.text
        assert r.json()[0]["label"] == 1
        assert r.headers["x-model-version"] == "sv/2"
    finally:
        assert _stop(running, signal.SIGTERM) == 0

    # The same file from elsewhere is not vouched for by any run: the operator decides.
    outside = _conveyor(
        env, "serve", str(Path(env["PROJECT"]) / "pipeline.skops"), "--port", "0", check=False
    )
    assert outside.returncode != 0
    assert "numpy.dtype" in outside.stderr
    assert "CONVEYOR_TRUSTED_TYPES" in outside.stderr

    missing = _conveyor(env, "serve", "models:/sv@prod", "--port", "0", check=False)
    assert missing.returncode != 0
    assert "no alias 'prod' (its aliases: champion -> 1)" in missing.stderr


def test_a_file_with_another_digest_is_never_served(
    trained: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, run_id = trained
    shown = json.loads(_conveyor(env, "runs", "show", run_id, "--json").stdout)
    digest = next(m["digest"] for m in shown["models"] if m["name"] == "trees")
    changed = tmp_path / "trees.skops"
    changed.write_bytes((Path(env["PROJECT"]) / "pipeline.skops").read_bytes())
    refused = _conveyor(
        env,
        "serve",
        str(changed),
        "--expect-digest",
        digest,
        "--trust-type",
        "sklearn.tree._tree.Tree",
        "--port",
        "0",
        check=False,
    )
    assert refused.returncode != 0
    assert "no longer matches" in refused.stderr
    assert "not served" in refused.stderr


def test_a_file_registered_from_elsewhere_still_needs_the_operators_trust(
    trained: tuple[dict[str, str], str],
) -> None:
    env, _ = trained
    path = Path(env["PROJECT"]) / "trees.skops"
    made = _conveyor(env, "models", "register", str(path), "--name", "outside")
    assert "Registered outside version 1" in made.stdout
    (version,) = json.loads(_conveyor(env, "models", "versions", "outside", "--json").stdout)
    assert (version["source"], version["run_id"], version["trusted_types"]) == (
        "file:trees.skops",
        None,
        [],
    )
    refused = _conveyor(env, "serve", "models:/outside/1", "--port", "0", check=False)
    assert refused.returncode != 0
    assert "sklearn.tree._tree.Tree" in refused.stderr
    missing = _conveyor(env, "models", "register", "nowhere.skops", "--name", "x", check=False)
    assert missing.returncode != 0
    assert "nowhere.skops: no such model file" in missing.stderr


def test_an_artifact_is_served_by_digest_trusting_only_the_types_given(
    trained: tuple[dict[str, str], str],
) -> None:
    """``artifact:<digest>/<file>``: what a pod on a Kubernetes target serves, with no registry."""
    env, run_id = trained
    shown = json.loads(_conveyor(env, "runs", "show", run_id, "--json").stdout)
    digest = next(m["digest"] for m in shown["models"] if m["name"] == "pipeline")
    uri = f"artifact:{digest}/pipeline.skops"
    untrusted = _conveyor(env, "serve", uri, "--port", "0", check=False)
    assert untrusted.returncode != 0
    assert "numpy.dtype" in untrusted.stderr  # no registry vouches for it: trust is given

    running = _start([uri, "--name", "dx", "--trust-type", "numpy.dtype"], env)
    try:
        r = httpx.post(f"{running.base}/predict", json=[ROW])
        assert r.status_code == 200, r.text
        assert r.json()[0]["label"] == 1
    finally:
        assert _stop(running, signal.SIGTERM) == 0

    absent = _conveyor(env, "serve", f"artifact:blake3:{'0' * 64}/m.skops", check=False)
    assert absent.returncode != 0
    assert f"artifact blake3:{'0' * 64} is not in the store" in absent.stderr
    malformed = _conveyor(env, "serve", "artifact:model.skops", check=False)
    assert malformed.returncode != 0
    assert "the form is artifact:blake3:<64 hex>/<file name>" in malformed.stderr
    assert "Traceback" not in absent.stderr + malformed.stderr


def test_a_standalone_served_request_leads_through_the_model_version(
    trained: tuple[dict[str, str], str],
) -> None:
    env, run_id = trained
    _conveyor(env, "models", "register", f"run:{run_id}/pipeline", "--name", "ln")
    _conveyor(env, "models", "alias", "ln", "champion", "1")

    running = _start(["models:/ln@champion", "--request-log", "on"], env)
    try:
        r = httpx.post(f"{running.base}/predict", json=[ROW], headers={"x-request-id": "ln-req-1"})
        assert r.status_code == 200, r.text
    finally:
        assert _stop(running, signal.SIGTERM) == 0  # the log is flushed on the way out

    tree = _conveyor(env, "lineage", "ln-req-1").stdout
    assert tree.startswith("request ln-req-1\nmade from:\n"), tree
    assert "answered by: model ln version 1 @champion" in tree
    graph = json.loads(_conveyor(env, "lineage", "ln-req-1", "--json").stdout)
    edges = {(e["from"], e["to"], e["relation"]) for e in graph["edges"]}
    digest = r.headers["x-model-digest"]
    assert ("model-version:ln/1", "request:ln-req-1", "answered") in edges
    assert (f"artifact:{digest}", "model-version:ln/1", "registered") in edges
    assert (f"run:{run_id}", f"artifact:{digest}", "saved") in edges
