"""Registered models on the platform: push models:/ apps, /v1/models, trust by provenance.

The platform runs with no CONVEYOR_TRUSTED_TYPES: the models conveyor.save_model
wrote in a run are served (isolated) because their run recorded what they need.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.cli.client import ApiError
from tests.trained_models import TRAIN
from tests.waiting import eventually

from .control import Platform, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("registered")) as running:
        assert "CONVEYOR_TRUSTED_TYPES" not in running.env()
        yield running


@pytest.fixture(scope="module")
def run_id(platform: Platform) -> str:
    (platform.project / "train.py").write_text(TRAIN)
    platform.cli("run", "--", "python", "train.py")
    return str(json.loads(platform.cli("runs", "--json").stdout)[0]["id"])


def _predict(platform: Platform, app: str, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    request = urllib.request.Request(
        f"{platform.router}/{app}/predict",
        data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), response.headers


def test_an_app_of_a_registered_alias_serves_with_no_trusted_types(
    platform: Platform, run_id: str
) -> None:
    platform.cli("models", "register", f"run:{run_id}/pipeline", "--name", "dx")
    platform.cli("models", "alias", "dx", "champion", "1")
    (platform.project / "dx.yml").write_text(
        "applications:\n  - name: dx\n    model: models:/dx@champion\n    instances: 1\n"
    )
    pushed = platform.cli("push", "-f", "dx.yml")
    assert "model models:/dx@champion (version 1)" in pushed.stderr
    body, headers = _predict(platform, "dx", [{"sex": "m", "age": None, "bp": 140.0}])
    assert body[0]["label"] == 1
    assert headers["x-model-run-id"] == run_id
    assert headers["x-model-version"] == "dx/1"  # the instance is told which version it serves


def test_a_run_tree_model_is_pushed_and_served_with_no_trusted_types(
    platform: Platform, run_id: str
) -> None:
    (platform.project / "trees.yml").write_text(
        f"applications:\n  - name: trees\n    model: run:{run_id[:10]}/trees\n"
    )
    platform.cli("push", "-f", "trees.yml")
    body, _ = _predict(platform, "trees", [{"age": 30.0, "bp": 100.0}])
    assert body[0]["label"] == 0


def test_the_models_api_registers_lists_and_refuses_what_it_cannot_do(
    platform: Platform, run_id: str
) -> None:
    client = platform.client
    made = client.call("POST", "/v1/models/api-dx/versions", {"source": f"run:{run_id}/pipeline"})
    assert (made["version"], made["created"]) == (1, True)
    again = client.call("POST", "/v1/models/api-dx/versions", {"source": f"run:{run_id}/pipeline"})
    assert (again["version"], again["created"]) == (1, False)
    client.call("POST", "/v1/models/api-dx/versions", {"source": f"run:{run_id}/trees"})
    client.call("PUT", "/v1/models/api-dx/aliases/champion", {"version": 1})
    assert client.call("GET", "/v1/models/api-dx/aliases/champion")["version"] == 1
    with pytest.raises(ApiError) as refused:
        client.call("PUT", "/v1/models/api-dx/aliases/champion", {"version": 2})
    assert refused.value.status == 400
    assert "input 'sex' removed" in str(refused.value)
    with pytest.raises(ApiError) as unknown:
        client.call("GET", "/v1/models/api-dx/versions/9")
    assert unknown.value.status == 404
    assert "its versions: 1, 2" in str(unknown.value)
    names = [m["name"] for m in client.call("GET", "/v1/models")]
    assert "api-dx" in names
    patched = client.call("PATCH", "/v1/models/api-dx", {"tags": {"team": "risk"}})
    assert patched["tags"] == {"team": "risk"}


def test_an_app_following_an_alias_rolls_when_it_moves_without_failed_requests(
    platform: Platform, run_id: str
) -> None:
    platform.cli("run", "--seed", "2", "--", "python", "train.py")
    retrained = str(json.loads(platform.cli("runs", "--json").stdout)[0]["id"])
    for trained in (run_id, retrained):
        platform.cli("models", "register", f"run:{trained}/pipeline", "--name", "live")
    versions = json.loads(platform.cli("models", "versions", "live", "--json").stdout)
    digests = [v["digest"] for v in versions]
    assert len(set(digests)) == 2
    platform.cli("models", "alias", "live", "champion", "1")
    (platform.project / "live.yml").write_text(
        "applications:\n  - name: live\n    model: models:/live@champion\n"
        "    instances: 1\n    follow-alias: true\n"
    )
    platform.cli("push", "-f", "live.yml")
    served: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        for _ in range(20_000):  # bounded: at most this many, or until told to stop
            if stop.is_set():
                return
            try:
                _, headers = _predict(platform, "live", [{"sex": "f", "age": 50.0, "bp": 130.0}])
                served.append((200, headers["x-model-digest"]))
            except OSError as exc:
                served.append((0, repr(exc)))

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: len(served) > 10, what="requests to reach the app")
        platform.cli("models", "alias", "live", "champion", "2")
        eventually(lambda: served[-1][1] == digests[1], what="the app to serve version 2")
        count = len(served)
        eventually(lambda: len(served) > count + 10, what="requests after the roll")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = [s for s in served if s[0] != 200]
    assert failures == [], f"{len(failures)} of {len(served)} requests failed: {failures[:5]}"
    assert served[0][1] == digests[0]
    # The roll is a revision (recorded once the old instance has drained) and an event.
    eventually(lambda: platform.app("live")["revision"] == 2, what="revision 2 to be the app's")
    moved = platform.cli("events", "live").stdout
    assert "alias-moved" in moved
