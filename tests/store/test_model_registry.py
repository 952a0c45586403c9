"""The model registry on SQLite and PostgreSQL: versions, aliases, tags, models:/ URIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import IntegrityError, NotFoundError, UsageError
from conveyor.repro.registered import (
    export_model,
    model_blob,
    move_alias,
    parse_artifact_uri,
    parse_models_uri,
    register_run_model,
    resolve_version,
    signature_differences,
)
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.models import ModelRepository
from conveyor.store.records import ModelRecord
from conveyor.store.registry import Registry
from tests.store.test_registry import make_run

SIG_A = {
    "inputs": [{"name": "age", "dtype": "int64", "shape": []}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": []}],
    "classes": [0, 1],
    "task": "classification",
}
SIG_B = {
    "inputs": [
        {"name": "age", "dtype": "float64", "shape": []},
        {"name": "sex", "dtype": "object", "shape": []},
    ],
    "outputs": [{"name": "label", "dtype": "int64", "shape": []}],
    "classes": [0, 1],
    "task": "classification",
}


def _trained(
    registry: Registry, store: ArtifactStore, tmp_path: Path, content: bytes, sig: dict[str, object]
) -> str:
    """A finished run that saved ``content`` as its model ``model``; returns run:<id>/model."""
    run = make_run()
    registry.create_run(run)
    model_file = tmp_path / f"{run.id}.skops"
    model_file.write_bytes(content)
    digest = store.put_file(model_file)
    registry.add_model(
        ModelRecord(run.id, "model", "model.skops", "sklearn", digest, sig, ("numpy.dtype",))
    )
    return f"run:{run.id}/model"


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_versions_are_numbered_and_the_same_artifact_is_not_registered_twice(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    first = _trained(registry, artifacts, tmp_path, b"one", SIG_A)
    second = _trained(registry, artifacts, tmp_path, b"two", SIG_A)
    v1, created = register_run_model(registry, first, "diagnosis", description="who is ill")
    assert (v1.version, created, v1.trusted_types) == (1, True, ("numpy.dtype",))
    again, created = register_run_model(registry, first, "diagnosis")
    assert (again.version, created) == (1, False)
    v2, created = register_run_model(registry, second, "diagnosis")
    assert (v2.version, created, v2.source) == (2, True, second)
    repo = ModelRepository(registry)
    assert [v.version for v in repo.versions("diagnosis")] == [1, 2]
    model = repo.model("diagnosis")
    assert (model.description, model.latest_version) == ("who is ill", 2)
    assert resolve_version("models:/diagnosis", registry).version == 2
    assert resolve_version("models:/diagnosis/1", registry).digest == v1.digest


def test_aliases_move_and_refuse_a_different_signature_unless_forced(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    for content in (b"a", b"b"):
        register_run_model(registry, _trained(registry, artifacts, tmp_path, content, SIG_A), "m")
    register_run_model(registry, _trained(registry, artifacts, tmp_path, b"c", SIG_B), "m")
    assert move_alias(registry, "m", "champion", 1) is None
    assert move_alias(registry, "m", "champion", 2) == 1
    assert resolve_version("models:/m@champion", registry).version == 2
    with pytest.raises(UsageError) as refused:
        move_alias(registry, "m", "champion", 3)
    message = refused.value.message
    assert "input 'age' dtype int64 -> float64" in message
    assert "input 'sex' added" in message
    assert resolve_version("models:/m@champion", registry).version == 2
    assert move_alias(registry, "m", "champion", 3, force=True) == 2
    assert ModelRepository(registry).version("m", 3).aliases == ("champion",)


def test_unknown_models_versions_and_aliases_name_what_exists(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    register_run_model(registry, _trained(registry, artifacts, tmp_path, b"a", SIG_A), "fraud")
    move_alias(registry, "fraud", "champion", 1)
    with pytest.raises(NotFoundError, match=r"no registered model named 'frod' \(models: fraud\)"):
        resolve_version("models:/frod/1", registry)
    with pytest.raises(NotFoundError, match=r"no version 7 \(its versions: 1\)"):
        resolve_version("models:/fraud/7", registry)
    with pytest.raises(NotFoundError, match=r"no alias 'prod' \(its aliases: champion -> 1\)"):
        resolve_version("models:/fraud@prod", registry)
    with pytest.raises(NotFoundError, match="no version 4"):
        move_alias(registry, "fraud", "champion", 4)


def test_tags_and_description_change_versions_do_not(registry: Registry) -> None:
    repo = ModelRepository(registry)
    repo.add_version(
        "m",
        digest="blake3:" + "1" * 64,
        format="onnx",
        signature=None,
        run_id=None,
        source="file:m.onnx",
        filename="m.onnx",
    )
    repo.update_model("m", description="new", set_tags={"team": "risk", "tier": "1"})
    model = repo.update_model("m", remove_tags=("tier",))
    assert (model.description, dict(model.tags)) == ("new", {"team": "risk"})
    assert [m.name for m in repo.models()] == ["m"]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("models:/", "is not a registered model URI"),
        ("models:/x/zero", "'zero' is not a version number"),
        ("models:/x@", "alias '' is not valid"),
        ("models:/../etc/1", "model name '..' is not valid"),
    ],
)
def test_malformed_models_uris_say_the_form(uri: str, problem: str) -> None:
    with pytest.raises(UsageError, match="the form is models:/<name>/<version>") as caught:
        parse_models_uri(uri)
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("artifact:blake3:" + "ab" * 32, "is not an artifact model URI"),
        ("artifact:blake3:" + "ab" * 32 + "/", "is not an artifact model URI"),
        ("artifact:blake3:" + "ab" * 32 + "/..", "is not an artifact model URI"),
        ("artifact:blake3:" + "ab" * 32 + "/a/model.skops", "is not an artifact model URI"),
        ("artifact:blake3:../../etc/model.skops", "is not an artifact model URI"),
        ("artifact:sha1:abc/model.skops", "'sha1:abc' is not an artifact digest"),
    ],
)
def test_malformed_artifact_uris_say_the_form(uri: str, problem: str) -> None:
    with pytest.raises(UsageError, match="the form is artifact:blake3:<64 hex>/") as caught:
        parse_artifact_uri(uri)
    assert problem in caught.value.message


def test_a_blob_is_looked_up_for_a_target_without_being_read(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    uri = _trained(registry, artifacts, tmp_path, b"model bytes", SIG_A)
    version, _ = register_run_model(registry, uri, "m")
    blob = model_blob("models:/m/1", registry)
    assert (blob.name, blob.version, blob.trusted_types) == ("m", 1, ("numpy.dtype",))
    assert blob.uri == f"artifact:{version.digest}/model.skops"
    assert parse_artifact_uri(blob.uri) == (version.digest, "model.skops")
    by_run = model_blob(uri, registry)
    assert (by_run.name, by_run.version, by_run.digest) == ("model", None, version.digest)


def test_export_verifies_the_digest_and_never_hands_over_a_changed_file(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    version, _ = register_run_model(
        registry, _trained(registry, artifacts, tmp_path, b"model bytes", SIG_A), "m"
    )
    found = export_model("models:/m/1", registry, artifacts, tmp_path / "out")
    assert found.path.read_bytes() == b"model bytes"
    assert (found.version, found.trusted_types, found.digest) == (
        1,
        ("numpy.dtype",),
        version.digest,
    )
    found.path.write_bytes(b"tampered cache")  # a changed cache file is replaced
    assert export_model("models:/m/1", registry, artifacts, tmp_path / "out").path.read_bytes() == (
        b"model bytes"
    )
    blob = next(
        p
        for p in (tmp_path / "artifacts").rglob("*")
        if p.is_file() and p.read_bytes() == b"model bytes"
    )
    blob.chmod(0o644)
    blob.write_bytes(b"rotten")
    found.path.unlink()
    with pytest.raises(IntegrityError):
        export_model("models:/m/1", registry, artifacts, tmp_path / "out")
    assert not found.path.exists()


def test_signature_differences_are_empty_for_equal_signatures() -> None:
    assert signature_differences(SIG_A, dict(SIG_A)) == []
    assert signature_differences(SIG_A, None) == ["one version has no recorded signature"]


def test_artifact_gc_keeps_every_registered_version(registry: Registry) -> None:
    digest = "blake3:" + "2" * 64
    ModelRepository(registry).add_version(
        "kept", digest=digest, format="onnx", signature=None, run_id=None,
        source="file:m.onnx", filename="m.onnx",
    )  # fmt: skip
    assert digest in registry.referenced_digests()


def test_lineage_finds_the_versions_of_a_digest_and_the_apps_and_streams_using_one(
    registry: Registry, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    from conveyor.store import lineage
    from conveyor.store.apps import AppRepository
    from conveyor.store.streams import StreamRepository

    v1, _ = register_run_model(registry, _trained(registry, artifacts, tmp_path, b"1", SIG_A), "dx")
    register_run_model(registry, _trained(registry, artifacts, tmp_path, b"2", SIG_A), "dx")
    move_alias(registry, "dx", "champion", 1)
    assert lineage.versions_with_digest(registry, v1.digest) == [("dx", 1)]
    apps = AppRepository(registry)
    for app, model, droplet in [
        ("staged", "models:/dx@champion", {"name": "dx", "version": 1}),
        ("pinned", "models:/dx/1", None),
        ("aliased", "models:/dx@champion", None),
        ("newer", "models:/dx/2", None),
        ("moved-on", "models:/dx@champion", {"name": "dx", "version": 2}),
        ("other", "models:/dxx/1", None),
    ]:
        apps.save_app(app, state="stopped", instances=1, revision=1)
        spec = {"kind": "model", "model": model}
        apps.add_revision(app, description="push", spec=spec, files=None, droplet=droplet)
    found = lineage.revisions_of_version(registry, "dx", 1, {"champion"})
    assert sorted(r.app for r in found) == ["aliased", "pinned", "staged"]
    streams = StreamRepository(registry)
    for name, text in [
        ("by-alias", "http | score --model=models:/dx@champion | log"),
        ("by-number", "http | score --model=models:/dx/2 | log"),
    ]:
        streams.create(name, text)
        streams.add_version(name, definition=text, properties={}, binder="memory", description="")
    scoring = lineage.streams_scoring_version(registry, "dx", 1, {"champion"})
    assert [s.stream for s in scoring] == ["by-alias"]
