"""Pushed apps on a real platform are isolated: from its token, its registry and each other.

The wrapper itself is tested in test_isolation.py; here a platform started as
a user would (``conveyor server``) runs two pushed apps, and one of them tries
to reach what it must not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .control import Platform, get, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("isolated")) as running:
        yield running


def _probe(platform: Platform, what: str, **query: object) -> dict[str, object]:
    args = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    status, body = get(f"{platform.router}/prober/{what}?{args}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def test_a_pushed_app_reaches_neither_the_platform_nor_another_app(platform: Platform) -> None:
    victim = platform.write_hello_app("victim", instances=1)
    (platform.project / "victim" / "secret.txt").write_text("the victim's own file\n")
    platform.cli("push", "-f", str(victim))
    platform.cli("push", "-f", str(platform.write_hello_app("prober", instances=1)))

    # The probe works: the app reads its own source, which the platform gave it.
    assert str(_probe(platform, "read", path="hello.py")["read"]).startswith('"""A tiny HTTP')
    token = platform.settings.platform_dir / "token"
    registry = platform.home / "registry.db"
    [secret] = list((platform.settings.platform_dir / "droplets").rglob("secret.txt"))
    for path in (token, registry, secret):
        assert path.exists()  # there on the host ...
        answer = _probe(platform, "read", path=path)
        assert "read" not in answer, f"the app read {path}"  # ... not for the app
        assert answer["error"] in ("FileNotFoundError", "PermissionError")

    victim_pid = platform.app("victim")["instances_detail"][0]["pid"]
    platform_pid = platform.client.pid
    for pid in (victim_pid, platform_pid):
        answer = _probe(platform, "signal", pid=pid)
        assert answer.get("error") in ("ProcessLookupError", "PermissionError"), answer
    victim_now = platform.app("victim")["instances_detail"][0]
    assert (victim_now["pid"], victim_now["restarts"]) == (victim_pid, 0)
    assert platform.process is not None
    assert platform.process.poll() is None

    # What the app does see of its environment: nothing of the platform's settings.
    for name in ("CONVEYOR_HOME", "CONVEYOR_API", "CONVEYOR_ROUTER"):
        assert get(f"{platform.router}/prober/env?name={name}")[1]["value"] is None


def test_conveyor_app_says_which_isolation_each_instance_got(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("shown", instances=1)))
    shown = platform.cli("app", "shown").stdout
    mechanism = "namespaces+uid" if os.geteuid() == 0 else "user namespace"
    assert f"isolation: {mechanism}" in shown
    detail = platform.app("shown")["instances_detail"][0]
    assert str(detail["isolation"]).startswith(mechanism)
    started = [e for e in platform.app("shown")["events"] if e["kind"] == "started"]
    assert started[-1]["details"]["isolation"] == detail["isolation"]


def test_a_platform_opted_out_of_isolation_says_so(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    bare = Platform(home=tmp_path / "home", project=tmp_path / "project")
    bare.extra_env["CONVEYOR_ISOLATION"] = "none"
    bare.start()
    try:
        bare.cli("push", "-f", str(bare.write_hello_app("bare", instances=1)))
        assert (
            "isolation: none (opted out: CONVEYOR_ISOLATION=none)" in bare.cli("app", "bare").stdout
        )
    finally:
        bare.stop()


def test_a_run_model_is_handed_to_the_app_with_its_run_id(platform: Platform) -> None:
    import json
    import urllib.request

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.models.sklearn import save
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.records import ModelRecord, RunRecord, RunStatus
    from conveyor.store.registry import Registry

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 2)), columns=["a", "b"])
    save(LogisticRegression().fit(x, x["a"] > 0), platform.project / "run.skops", x)
    settings = platform.settings
    digest = ArtifactStore.from_settings(settings).put_file(platform.project / "run.skops")
    run_id = "5eed" + "0" * 28
    with Registry.from_settings(settings) as registry:  # what `conveyor run` would record
        registry.create_run(
            RunRecord(run_id, "train", RunStatus.FINISHED, ["train"], "/", 0.0, 0, "h", {}, {})
        )
        registry.add_model(ModelRecord(run_id, "model", "run.skops", "sklearn", digest, None))
    (platform.project / "ran.yml").write_text(
        "applications:\n  - name: ran\n    model: run:5eed/model\n    instances: 1\n"
    )
    platform.cli("push", "-f", "ran.yml")
    request = urllib.request.Request(
        f"{platform.router}/ran/predict", data=json.dumps([{"a": 1.0, "b": 0.0}]).encode()
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["x-model-run-id"] == run_id  # the lineage survives the sandbox
        assert json.loads(response.read())[0]["label"] is True
