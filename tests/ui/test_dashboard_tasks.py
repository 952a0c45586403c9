"""The tasks pages over HTTP: graphs, executions with their steps, and the actions on them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.platform.control import Platform, running_platform
from tests.ui.dashboard import csrf_of, logged_in
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # The restart test flips a file in the test's folder between a failed step and its
    # restart, which a sandboxed step (the default) cannot see; tests/tasks covers isolation.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVEYOR_ISOLATION", "none")
        with running_platform(tmp_path_factory.mktemp("dashboard-tasks")) as running:
            yield running


@pytest.fixture
def client(platform: Platform) -> Iterator[httpx.Client]:
    opened = logged_in(platform)
    try:
        yield opened
    finally:
        opened.close()


def _state_of(client: httpx.Client, where: str) -> str:
    page = client.get(where).text
    found = re.search(r"<h1>[^<]*<span class=\"badge (\w+)\"", page)
    return found.group(1) if found else ""


def test_a_task_drawn_launched_failed_and_restarted(
    platform: Platform, client: httpx.Client
) -> None:
    flag = platform.project / "flag"
    definition = f"stamp: timestamp && check: shell --command='test -f {flag}'"
    platform.client.call("POST", "/v1/tasks", {"name": "ui-pipe", "definition": definition})

    listing = client.get("/ui/tasks").text
    assert '<a href="/ui/tasks/ui-pipe">ui-pipe</a>' in listing
    assert "never run" in listing
    page = client.get("/ui/tasks/ui-pipe").text
    assert 'aria-label="task ui-pipe"' in page
    assert 'data-step="stamp"' in page
    assert 'data-step="check"' in page
    assert '<g class="marker start">' in page
    assert '<g class="marker end">' in page

    csrf = csrf_of(page)
    refused = client.post("/ui/tasks/ui-pipe/launch", data={"params": ""})
    assert refused.status_code == 403
    bad = client.post("/ui/tasks/ui-pipe/launch", data={"csrf": csrf, "params": "no equals"})
    assert bad.headers["location"] == "/ui/tasks/ui-pipe"
    assert "parameter line 1" in client.get("/ui/tasks/ui-pipe").text
    launched = client.post("/ui/tasks/ui-pipe/launch", data={"csrf": csrf, "params": "day=1"})
    assert launched.status_code == 303
    where = launched.headers["location"]
    assert where.startswith("/ui/tasks/executions/")

    eventually(
        lambda: _state_of(client, where) == "FAILED", what="the execution to end", timeout=120
    )
    shown = client.get(where).text
    assert '<g class="step COMPLETED" data-step="stamp">' in shown
    assert '<g class="step FAILED" data-step="check">' in shown
    stamp_row = shown.split('<tr data-step="stamp">')[1].split("</tr>")[0]
    assert 'href="/ui/runs/' in stamp_row  # each step is a recorded run
    assert "Restart" in shown

    flag.touch()
    client.post(f"{where}/restart", data={"csrf": csrf})
    eventually(
        lambda: _state_of(client, where) == "COMPLETED", what="the execution to end", timeout=120
    )
    assert '<g class="step COMPLETED" data-step="check">' in client.get(where).text


def test_a_running_execution_stops(platform: Platform, client: httpx.Client) -> None:
    platform.client.call(
        "POST", "/v1/tasks", {"name": "ui-slow", "definition": "shell --command='sleep 120'"}
    )
    csrf = csrf_of(client.get("/ui/tasks/ui-slow").text)
    where = client.post("/ui/tasks/ui-slow/launch", data={"csrf": csrf}).headers["location"]
    eventually(lambda: _state_of(client, where) == "RUNNING", what="the step to start", timeout=60)
    eventually(lambda: "Stop" in client.get(where).text, what="a stop button", timeout=60)
    client.post(f"{where}/stop", data={"csrf": csrf})
    eventually(
        lambda: _state_of(client, where) == "STOPPED", what="the execution to stop", timeout=60
    )


def test_a_schedule_paused_and_resumed(platform: Platform, client: httpx.Client) -> None:
    platform.client.call("POST", "/v1/tasks", {"name": "ui-tick", "definition": "timestamp"})
    platform.client.call(
        "POST",
        "/v1/task-schedules",
        {"name": "ui-nightly", "task": "ui-tick", "cron": "0 2 * * *"},
    )
    page = client.get("/ui/tasks/ui-tick").text
    assert "0 2 * * *" in page
    csrf = csrf_of(page)
    paused = client.post(
        "/ui/tasks/schedules/ui-nightly/pause", data={"csrf": csrf, "back": "/ui/tasks/ui-tick"}
    )
    assert paused.headers["location"] == "/ui/tasks/ui-tick"
    shown = client.get("/ui/tasks/ui-tick").text
    assert "Paused schedule ui-nightly" in shown
    assert ">paused</span>" in shown
    assert ">Resume</button>" in shown
    client.post("/ui/tasks/schedules/ui-nightly/resume", data={"csrf": csrf})
    assert ">active</span>" in client.get("/ui/tasks").text
    missing = client.post("/ui/tasks/schedules/nope/pause", data={"csrf": csrf})
    assert missing.status_code == 303
    assert "nope" in client.get("/ui/tasks").text
