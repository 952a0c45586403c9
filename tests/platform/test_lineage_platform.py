"""End to end: a request answered through the router is traced back to the training data.

prep.py writes data.csv in one recorded run; train.py reads it and saves a
model in another; the model is pushed as an app on a platform whose request
log is on; one request through the router, and ``conveyor lineage`` on its
request id reaches the data's digest and the run that wrote it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.store.digests import digest_file
from conveyor.store.registry import Registry
from tests.waiting import eventually

from .control import Platform

pytestmark = pytest.mark.slow

PREP = """\
import conveyor, numpy as np
rng = np.random.default_rng(conveyor.seed())
with open(conveyor.output("data.csv"), "w") as f:
    f.write("a,b,y\\n")
    for a, b in rng.normal(size=(80, 2)):
        f.write(f"{a},{b},{int(a + b > 0)}\\n")
"""
TRAIN = """\
import conveyor, pandas as pd
from sklearn.linear_model import LogisticRegression
frame = pd.read_csv(conveyor.input("data.csv"))
x = frame[["a", "b"]]
conveyor.save_model(LogisticRegression().fit(x, frame["y"]), "model", example=x)
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("lineage")
    (root / "project").mkdir()
    running = Platform(home=root / "home", project=root / "project")
    running.extra_env["CONVEYOR_REQUEST_LOG"] = "on"
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _runs(platform: Platform) -> dict[str, str]:
    with Registry.from_settings(platform.settings) as registry:
        return {run.name: run.id for run in registry.list_runs()}


@pytest.fixture(scope="module")
def runs(platform: Platform) -> dict[str, str]:
    """prep and train recorded: run name -> id."""
    project: Path = platform.project
    (project / "prep.py").write_text(PREP)
    (project / "train.py").write_text(TRAIN)
    platform.cli("run", "--name", "prep", "--", "python", "prep.py")
    platform.cli("run", "--name", "train", "--", "python", "train.py")
    return _runs(platform)


def _predict(platform: Platform, app: str) -> tuple[str, str | None]:
    """One request through the router: (its x-request-id, its x-model-version)."""
    request = urllib.request.Request(
        f"{platform.router}/{app}/predict", data=json.dumps([{"a": 1.0, "b": 0.5}]).encode()
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.headers["x-request-id"], response.headers.get("x-model-version")


def _traced(platform: Platform, ref: str) -> dict[str, Any]:
    def traced() -> dict[str, Any] | None:
        done = platform.cli("lineage", ref, "--json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    return eventually(traced, what=f"{ref} in the app's request log")


def test_lineage_of_a_routed_request_reaches_the_training_data(
    platform: Platform, runs: dict[str, str]
) -> None:
    project: Path = platform.project
    data_digest = digest_file(project / "data.csv")
    (project / "scorer.yml").write_text(
        f"applications:\n  - name: scorer\n    model: run:{runs['train']}/model\n    instances: 1\n"
    )
    platform.cli("push", "-f", "scorer.yml")

    request_id, version = _predict(platform, "scorer")
    assert version is None  # a run's model, not a registry version

    graph = _traced(platform, request_id)
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert "revision:scorer/1" in nodes
    assert f"run:{runs['train']}" in nodes
    assert f"artifact:{data_digest}" in nodes
    assert f"run:{runs['prep']}" in nodes  # the run that made the training data

    tree = platform.cli("lineage", request_id).stdout
    assert "answered by: app scorer revision 1" in tree
    assert "written by: run" in tree
    assert "data.csv" in tree

    remote = platform.client.call("GET", f"/v1/lineage?ref={quote(request_id)}")
    assert remote["root"] == f"request:{request_id}"
    unknown = platform.cli("lineage", "no-such-request", check=False)
    assert unknown.returncode != 0
    assert "names nothing Conveyor recorded" in unknown.stderr


def test_a_request_to_an_app_of_a_registered_version_is_traced_through_the_version(
    platform: Platform, runs: dict[str, str]
) -> None:
    platform.cli("models", "register", f"run:{runs['train']}/model", "--name", "scored")
    platform.cli("models", "alias", "scored", "champion", "1")
    (platform.project / "champion.yml").write_text(
        "applications:\n  - name: champion\n    model: models:/scored@champion\n"
    )
    platform.cli("push", "-f", "champion.yml")
    request_id, version = _predict(platform, "champion")
    assert version == "scored/1"

    graph = _traced(platform, request_id)
    edges = {(e["from"], e["to"], e["relation"]) for e in graph["edges"]}
    assert ("revision:champion/1", f"request:{request_id}", "answered") in edges
    assert ("model-version:scored/1", "revision:champion/1", "serves") in edges
    assert f"run:{runs['prep']}" in {node["id"] for node in graph["nodes"]}

    remote = platform.client.call("GET", f"/v1/lineage?ref={quote('models:/scored@champion')}")
    assert remote["root"] == "model-version:scored/1"
    assert {
        "from": "model-version:scored/1",
        "to": "revision:champion/1",
        "relation": "serves",
    } in (remote["edges"])
    tree = platform.cli("lineage", "models:/scored/1").stdout
    assert "served by: app champion revision 1" in tree
