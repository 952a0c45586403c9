"""Lineage: a message scored with a model a recorded run saved names that run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import open_binder
from conveyor.streams.messages import Message
from tests.streams.helpers import collect, run_app

pytestmark = pytest.mark.slow

CONVEYOR = [sys.executable, "-m", "conveyor"]
TRAIN = """\
import conveyor
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
conveyor.save_model(LogisticRegression(max_iter=500).fit(X, y), 'model', example=X)
"""


def test_scored_messages_carry_the_training_run_and_model_digest(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        [*CONVEYOR, "run", "--", "python", "train.py"],
        cwd=project, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    listed = subprocess.run(
        [*CONVEYOR, "runs", "--json"], env=env, check=True, capture_output=True, text=True
    )
    run_id = json.loads(listed.stdout)[0]["id"]

    settings = Settings.from_env({"CONVEYOR_HOME": env["CONVEYOR_HOME"]})
    binder = open_binder(f"embedded://{tmp_path / 'streams.db'}", settings)
    row = {
        "sepal length (cm)": 5.1,
        "sepal width (cm)": 3.5,
        "petal length (cm)": 1.4,
        "petal width (cm)": 0.2,
    }
    binder.provision("l.in", "l")
    binder.publish("l.in", [Message(row, {"id": "m1"})])
    app = run_app(
        binder, settings, app="score", input="l.in", output="l.score", group="l",
        options={"model": f"run:{run_id[:8]}/model"},
    )  # fmt: skip
    try:
        (scored,) = collect(binder, "l.score", "l", 1)
    finally:
        app.stop()
        binder.close()
    assert scored.payload["prediction"] == 0
    assert set(scored.payload["probabilities"]) == {"0", "1", "2"}
    assert scored.headers["model-run"] == run_id
    assert scored.headers["model-digest"].startswith("blake3:")
    assert scored.headers["model-source"] == f"run:{run_id[:8]}/model"


def test_score_takes_a_registered_alias_and_trusts_what_its_run_recorded(tmp_path: Path) -> None:
    from tests.trained_models import TRAIN as TREES

    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TREES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def conveyor(*args: str) -> str:
        return subprocess.run(
            [*CONVEYOR, *args], cwd=project, env=env, check=True, capture_output=True,
            text=True, timeout=300,
        ).stdout  # fmt: skip

    conveyor("run", "--", "python", "train.py")
    run_id = json.loads(conveyor("runs", "--json"))[0]["id"]
    conveyor("models", "register", f"run:{run_id}/trees", "--name", "bp")
    conveyor("models", "alias", "bp", "champion", "1")

    # No CONVEYOR_TRUSTED_TYPES: the gradient-boosting file needs sklearn's Tree type.
    settings = Settings.from_env({"CONVEYOR_HOME": env["CONVEYOR_HOME"]})
    assert settings.trusted_types == ()
    binder = open_binder(f"embedded://{tmp_path / 'streams.db'}", settings)
    binder.provision("r.in", "r")
    binder.publish("r.in", [Message({"age": 30.0, "bp": 140.0}, {"id": "m1"})])
    app = run_app(
        binder, settings, app="score", input="r.in", output="r.score", group="r",
        options={"model": "models:/bp@champion"},
    )  # fmt: skip
    try:
        (scored,) = collect(binder, "r.score", "r", 1)
    finally:
        app.stop()
        binder.close()
    assert scored.payload["prediction"] == 1
    assert scored.headers["model-run"] == run_id
    assert scored.headers["model-source"] == "models:/bp@champion"
