"""OpenLineage events: runs, task steps and stream deployments, to a file or a Marquez-like API."""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.orchestrate.stream_lineage import StreamLineage
from conveyor.repro.openlineage import Emitter, run_event, run_uuid
from conveyor.store.digests import digest_file
from conveyor.streams.plan import PlannedApp
from conveyor.streams.runtime import LaunchSpec
from tests.openlineage_schema import validate_event
from tests.repro.conftest import Cli
from tests.waiting import eventually

SCRIPT = """\
import conveyor
text = open(conveyor.input("raw.txt")).read()
with open(conveyor.output("upper.txt"), "w") as f:
    f.write(text.upper())
"""


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_sends_start_and_complete_with_its_data_versioned_by_digest(
    cli: Cli, tmp_path: Path
) -> None:
    events_file = tmp_path / "lineage" / "events.jsonl"
    cli.extra_env["CONVEYOR_OPENLINEAGE"] = f"file://{events_file}"
    (cli.project / "raw.txt").write_text("hello\n")
    (cli.project / "upper.py").write_text(SCRIPT)
    cli("run", "--name", "shout", "--", sys.executable, "upper.py")

    start, complete = _events(events_file)
    for event in (start, complete):
        validate_event(event)
    run = cli.last_run()
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert start["job"] == complete["job"] | {"facets": start["job"]["facets"]}
    assert complete["job"]["name"] == "shout"
    assert complete["run"]["runId"].replace("-", "") == run["id"]
    assert complete["run"]["facets"]["conveyor_run"]["seed"] == run["seed"]
    versions = {
        d["name"]: d["facets"]["version"]["datasetVersion"]
        for d in complete["inputs"] + complete["outputs"]
    }
    assert versions[str(cli.project / "raw.txt")] == digest_file(cli.project / "raw.txt")
    assert versions[str(cli.project / "upper.txt")] == digest_file(cli.project / "upper.txt")


def test_a_failed_run_sends_fail_with_its_error(cli: Cli, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    cli.extra_env["CONVEYOR_OPENLINEAGE"] = f"file://{events_file}"
    cli("run", "--", sys.executable, "-c", "raise SystemExit(3)", check=False)
    _, fail = _events(events_file)
    validate_event(fail)
    assert fail["eventType"] == "FAIL"
    assert "3" in fail["run"]["facets"]["errorMessage"]["message"]


def test_events_go_nowhere_unless_asked(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path)})
    assert settings.openlineage is None
    assert not Emitter.from_settings(settings).enabled
    off = Settings.from_env({"CONVEYOR_HOME": str(tmp_path), "CONVEYOR_OPENLINEAGE": "off"})
    assert off.openlineage is None


class _Marquez(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def marquez() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A loopback server that takes POST /api/v1/lineage, on a free port."""
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Handler", (_Marquez,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_events_post_to_a_marquez_endpoint(
    cli: Cli, marquez: tuple[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    url, received = marquez
    cli.extra_env["CONVEYOR_OPENLINEAGE"] = url
    cli("run", "--name", "posted", "--", sys.executable, "-c", "pass")
    eventually(lambda: len(received) >= 2, what="START and COMPLETE at the endpoint")
    assert [path for path, _ in received] == ["/api/v1/lineage"] * 2
    assert [event["eventType"] for _, event in received] == ["START", "COMPLETE"]
    for _, event in received:
        validate_event(event)


def test_an_endpoint_that_is_down_never_fails_the_run(cli: Cli) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cli.extra_env["CONVEYOR_OPENLINEAGE"] = f"http://127.0.0.1:{port}"
    done = cli("run", "--", sys.executable, "-c", "print('fine')")
    assert "fine" in done.stdout
    assert cli.last_run()["status"] == "FINISHED"


def test_a_bad_destination_is_refused_with_the_forms_it_takes(cli: Cli) -> None:
    cli.extra_env["CONVEYOR_OPENLINEAGE"] = "ftp://somewhere"
    done = cli("run", "--", sys.executable, "-c", "pass", check=False)
    assert done.returncode != 0
    assert "CONVEYOR_OPENLINEAGE='ftp://somewhere' is not a destination" in done.stderr


def test_stream_deployments_start_fail_and_complete(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    lineage = StreamLineage(Emitter(f"file://{events_file}"))
    planned = [
        PlannedApp("fraud-http", "http", LaunchSpec("http", output="fraud.http")),
        PlannedApp(
            "fraud-score",
            "score",
            LaunchSpec(
                "score", {"model": "run:3f2a/model"}, input="fraud.http", output="fraud.score"
            ),
        ),
        PlannedApp("fraud-log", "log", LaunchSpec("log", input="fraud.score", output="scored")),
    ]
    lineage.started("fraud", 1, planned, "redis://u:secret@127.0.0.1:6379", "http | score | log")
    lineage.ended("fraud", 1, "COMPLETE")
    lineage.started("fraud", 2, planned, "embedded", "http | score | log")
    lineage.ended("fraud", 2, "FAIL", "an instance never got healthy")
    events = _events(events_file)
    for event in events:
        validate_event(event)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    first = events[0]
    assert first["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert first["inputs"] == [{"namespace": "conveyor", "name": "run:3f2a/model"}]
    assert first["outputs"] == [{"namespace": "redis://u:***@127.0.0.1:6379", "name": "scored"}]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"] != events[2]["run"]["runId"]
    assert "secret" not in events_file.read_text()
    assert os.path.getsize(events_file) > 0


def test_the_validator_refuses_what_the_spec_refuses() -> None:
    good = run_event("START", run_uuid("a" * 32), "job")
    validate_event(good)
    no_run_id = copy.deepcopy(good)
    del no_run_id["run"]["runId"]
    unknown = copy.deepcopy(good) | {"colour": "blue"}
    bad_uuid = copy.deepcopy(good)
    bad_uuid["run"]["runId"] = "not-a-uuid"
    bad_type = copy.deepcopy(good) | {"eventType": "BEGIN"}
    no_time = copy.deepcopy(good) | {"eventTime": "2026-12-05"}
    for broken in (no_run_id, unknown, bad_uuid, bad_type, no_time):
        with pytest.raises((AssertionError, ValueError, TypeError)):
            validate_event(broken)
