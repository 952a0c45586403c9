"""``conveyor lineage``: from a request or a run up to the data, and down to what used it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.config import Settings
from conveyor.errors import NotFoundError
from conveyor.repro.lineage import Sources, trace
from conveyor.repro.registered import move_alias, register_run_model
from conveyor.store.apps import AppRepository
from conveyor.store.digests import digest_file
from conveyor.store.records import FileRecord, ModelRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry
from conveyor.store.requestlog import RequestLogWriter
from conveyor.store.streams import StreamRepository

PREP = "a1" * 16
TRAIN = "b2" * 16
LATER = "c3" * 16
RAW = "blake3:" + "1" * 64
TRAIN_CSV = "blake3:" + "2" * 64
MODEL = "blake3:" + "3" * 64
SCORES = "blake3:" + "4" * 64
SNAPSHOT = "blake3:" + "5" * 64


@dataclass
class World:
    settings: Settings
    request_id: str


def _run(run_id: str, name: str, code: dict[str, object]) -> RunRecord:
    return RunRecord(
        run_id, name, RunStatus.FINISHED, ["python", f"{name}.py"], "/w", 1.0, 42, "h", code, {}
    )


@pytest.fixture
def world(conveyor_env: Settings) -> World:
    """prep reads raw.csv, writes train.csv; train reads it and saves a model; an app serves
    the model and answered one logged request; a later run reads the model's scores."""
    settings = conveyor_env
    with Registry.from_settings(settings) as registry:
        registry.create_run(_run(PREP, "prep", {"commit": "9f8e7d6c5b4a3210"}))
        registry.add_files(
            PREP,
            [
                FileRecord("input", "raw.csv", RAW, 10),
                FileRecord("output", "train.csv", TRAIN_CSV, 9),
            ],
        )
        registry.create_run(
            _run(TRAIN, "train", {"commit": "0123456789ab", "dirty": True, "snapshot": SNAPSHOT})
        )
        registry.add_files(TRAIN, [FileRecord("input", "train.csv", TRAIN_CSV, 9)])
        registry.add_model(ModelRecord(TRAIN, "model", "model.skops", "sklearn", MODEL, None))
        registry.create_run(_run(LATER, "report", {}))
        registry.add_files(LATER, [FileRecord("input", "model.skops", MODEL, 5)])
        apps = AppRepository(registry)
        apps.save_app("churn", state="started", instances=1, revision=1)
        spec = {"kind": "model", "model": f"run:{TRAIN[:8]}/model"}
        apps.add_revision("churn", description="push", spec=spec, files=None, droplet=None)
    writer = RequestLogWriter(
        settings.request_log_root / "churn",
        {"app": "churn", "revision": 1, "model": "model", "digest": MODEL, "run": TRAIN},
    )
    writer.record("req-0001")
    writer.close()
    return World(settings, "req-0001")


def _ids(world: World, ref: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    with Registry.from_settings(world.settings) as registry:
        graph = trace(ref, Sources(registry, world.settings))
    return set(graph.nodes), graph.edges


def test_a_request_leads_to_the_training_data_and_the_run_that_made_it(world: World) -> None:
    nodes, edges = _ids(world, world.request_id)
    assert {
        "revision:churn/1",
        f"artifact:{MODEL}",
        f"run:{TRAIN}",
        f"code:{SNAPSHOT}",
        f"artifact:{TRAIN_CSV}",
        f"run:{PREP}",
        f"artifact:{RAW}",
    } <= nodes
    assert (f"artifact:{TRAIN_CSV}", f"run:{TRAIN}", "read") in edges
    assert (f"run:{PREP}", f"artifact:{TRAIN_CSV}", "wrote") in edges


def test_a_run_leads_down_to_its_model_the_apps_serving_it_and_later_runs(world: World) -> None:
    nodes, edges = _ids(world, f"run:{TRAIN[:6]}")
    assert (f"run:{TRAIN}", f"artifact:{MODEL}", "saved") in edges
    assert (f"artifact:{MODEL}", "revision:churn/1", "serves") in edges
    assert (f"artifact:{MODEL}", f"run:{LATER}", "read") in edges
    assert f"artifact:{RAW}" in nodes  # and up


def test_the_cli_prints_a_tree_json_and_dot(world: World) -> None:
    runner = CliRunner()
    tree = runner.invoke(cli, ["lineage", world.request_id])
    assert tree.exit_code == 0, tree.output
    assert tree.output.startswith("request req-0001\nmade from:\n")
    assert "answered by: app churn revision 1" in tree.output
    assert "raw.csv" in tree.output
    assert "code 0123456789ab + uncommitted changes" in tree.output

    as_json = runner.invoke(cli, ["lineage", f"run:{TRAIN}/model", "--json"])
    graph = json.loads(as_json.output)
    assert graph["root"] == f"artifact:{MODEL}"
    assert {"from": f"artifact:{MODEL}", "to": "revision:churn/1", "relation": "serves"} in graph[
        "edges"
    ]

    dot = runner.invoke(cli, ["lineage", TRAIN[:8], "--dot"]).output
    assert dot.startswith("digraph lineage {")
    assert f'"run:{TRAIN}" -> "artifact:{MODEL}" [label="saved"];' in dot


def test_an_unknown_reference_names_what_was_searched(world: World) -> None:
    result = CliRunner().invoke(cli, ["lineage", "no-such-thing"])
    assert result.exit_code != 0
    assert "names nothing Conveyor recorded" in result.output
    assert "request logs" in result.output
    assert "runs" in result.output


def test_a_request_past_the_retention_window_says_so(world: World) -> None:
    for path in world.settings.request_log_root.rglob("*.log"):
        old = time.time() - 30 * 86400
        os.utime(path, (old, old))
    result = CliRunner().invoke(cli, ["lineage", world.request_id])
    assert result.exit_code != 0
    assert "older than the request log's retention window (7 days)" in result.output


def test_a_lost_hex_request_id_says_what_the_log_still_holds(world: World) -> None:
    result = CliRunner().invoke(cli, ["lineage", "5f0c9a0e41d2b7c8a1e3f4d500000001"])
    assert result.exit_code != 0
    assert "is not in the request logs" in result.output
    assert "retention window" in result.output


def test_a_model_file_is_traced_by_its_digest_but_not_over_the_api(
    world: World, tmp_path: Path
) -> None:
    model = tmp_path / "copy.skops"
    model.write_bytes(b"model bytes")
    digest = digest_file(model)
    with Registry.from_settings(world.settings) as registry:
        registry.add_model(ModelRecord(LATER, "copy", "copy.skops", "sklearn", digest, None))
        assert trace(str(model), Sources(registry, world.settings)).root == f"artifact:{digest}"
        with pytest.raises(NotFoundError, match="names nothing Conveyor recorded"):
            trace(str(model), Sources(registry, world.settings, files=False))


@pytest.fixture
def registered(world: World) -> World:
    """The train run's model registered as version 1 of 'churn' (alias champion), an app
    following the alias (staged: it recorded the version), an older app pinned to /1 with no
    record of its export, and a stream scoring with the alias."""
    with Registry.from_settings(world.settings) as registry:
        register_run_model(registry, f"run:{TRAIN}/model", "churn")
        move_alias(registry, "churn", "champion", 1)
        apps = AppRepository(registry)
        apps.save_app("dx", state="started", instances=1, revision=1)
        droplet = {"model_file": "/x", "name": "churn", "version": 1, "digest": MODEL}
        spec = {"kind": "model", "model": "models:/churn@champion"}
        apps.add_revision("dx", description="push", spec=spec, files=None, droplet=droplet)
        apps.save_app("pinned", state="started", instances=1, revision=1)
        spec = {"kind": "model", "model": "models:/churn/1"}
        apps.add_revision("pinned", description="push", spec=spec, files=None, droplet=None)
        apps.save_app("other", state="started", instances=1, revision=1)
        spec = {"kind": "model", "model": "models:/churn/2"}
        apps.add_revision("other", description="push", spec=spec, files=None, droplet=None)
        streams = StreamRepository(registry)
        definition = "http | score --model=models:/churn@champion | log"
        streams.create("scoring", definition)
        streams.add_version(
            "scoring", definition=definition, properties={}, binder="memory", description="deploy"
        )
    writer = RequestLogWriter(
        world.settings.request_log_root / "dx",
        {"app": "dx", "revision": 1, "model": "churn", "digest": MODEL, "run": TRAIN},
    )
    writer.record("req-0002")
    writer.close()
    return world


def test_a_model_version_leads_up_to_its_run_and_down_to_what_serves_it(
    registered: World,
) -> None:
    for ref in ("models:/churn/1", "models:/churn@champion"):
        nodes, edges = _ids(registered, ref)
        assert (f"artifact:{MODEL}", "model-version:churn/1", "registered") in edges
        assert (f"run:{TRAIN}", f"artifact:{MODEL}", "saved") in edges
        assert f"artifact:{TRAIN_CSV}" in nodes  # on up to the training data
        assert ("model-version:churn/1", "revision:dx/1", "serves") in edges
        assert ("model-version:churn/1", "revision:pinned/1", "serves") in edges
        assert ("model-version:churn/1", "stream:scoring@1", "scores") in edges
        assert "revision:other/1" not in nodes  # it asks for a version that is not this one


def test_a_request_to_an_app_of_a_registered_version_goes_through_the_version(
    registered: World,
) -> None:
    nodes, edges = _ids(registered, "req-0002")
    assert ("revision:dx/1", "request:req-0002", "answered") in edges
    assert ("model-version:churn/1", "revision:dx/1", "serves") in edges
    assert f"run:{PREP}" in nodes


def test_the_cli_traces_a_models_uri_and_names_what_exists(registered: World) -> None:
    runner = CliRunner()
    tree = runner.invoke(cli, ["lineage", "models:/churn@champion"])
    assert tree.exit_code == 0, tree.output
    assert tree.output.startswith("model churn version 1 @champion\nmade from:\n")
    assert "registered from: model model (sklearn)" in tree.output
    assert "served by: app dx revision 1" in tree.output
    assert "scored by: stream scoring version 1" in tree.output
    graph = json.loads(runner.invoke(cli, ["lineage", "models:/churn/1", "--json"]).output)
    assert graph["root"] == "model-version:churn/1"
    dot = runner.invoke(cli, ["lineage", "models:/churn/1", "--dot"]).output
    assert f'"artifact:{MODEL}" -> "model-version:churn/1" [label="registered"];' in dot

    missing = runner.invoke(cli, ["lineage", "models:/churn/7"])
    assert missing.exit_code != 0
    assert "has no version 7 (its versions: 1)" in missing.output
    alias = runner.invoke(cli, ["lineage", "models:/churn@nope"])
    assert "its aliases: champion -> 1" in alias.output
