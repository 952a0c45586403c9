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


def test_lineage_of_a_routed_request_reaches_the_training_data(platform: Platform) -> None:
    project: Path = platform.project
    (project / "prep.py").write_text(PREP)
    (project / "train.py").write_text(TRAIN)
    platform.cli("run", "--name", "prep", "--", "python", "prep.py")
    platform.cli("run", "--name", "train", "--", "python", "train.py")
    runs = _runs(platform)
    data_digest = digest_file(project / "data.csv")
    (project / "scorer.yml").write_text(
        f"applications:\n  - name: scorer\n    model: run:{runs['train']}/model\n    instances: 1\n"
    )
    platform.cli("push", "-f", "scorer.yml")

    request = urllib.request.Request(
        f"{platform.router}/scorer/predict", data=json.dumps([{"a": 1.0, "b": 0.5}]).encode()
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        request_id = response.headers["x-request-id"]

    def traced() -> dict[str, object] | None:
        done = platform.cli("lineage", request_id, "--json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    graph = eventually(traced, what="the request id in the app's request log")
    nodes = {node["id"]: node for node in graph["nodes"]}  # type: ignore[attr-defined]
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
