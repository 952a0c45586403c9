"""What the stream deployer hands an isolated stream app: its binder, its folders, its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.errors import UsageError
from conveyor.orchestrate.stream_sandbox import sandboxed
from conveyor.repro.lookup import RunModel
from conveyor.streams.binders import embedded_log


def _settings(tmp_path: Path, roots: tuple[Path, ...] = ()) -> Settings:
    home = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})
    return Settings(
        home=home.home,
        database_url=home.database_url,
        artifact_root=home.artifact_root,
        env_cache=home.env_cache,
        stream_data=tmp_path / "data",
        stream_roots=roots,
    )


def _no_runs(uri: str) -> RunModel:
    raise AssertionError(f"{uri} should not be looked up")


def test_the_embedded_log_its_folders_and_a_run_model_are_given_explicitly(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, roots=(tmp_path / "inbox",))
    model = tmp_path / "exported.skops"

    def run_model(uri: str) -> RunModel:
        assert uri == "run:3f2a/model"
        return RunModel(
            model, "3f2a" + "0" * 28, "model", "skops", "blake3:00", None, ("numpy.dtype",)
        )

    launch = {
        "app": "score",
        "binder": "embedded?lease=2",
        "options": {"model": "run:3f2a/model"},
    }
    given = sandboxed(launch, {"A": "1"}, settings, run_model)
    log = (settings.home / "streams" / "log.db").resolve()
    assert given.launch["binder"] == f"embedded://{log}?lease=2"
    # The digest and the types the run recorded: trusted in that file while it keeps it.
    assert given.launch["options"] == {
        "model": str(model),
        "model-run-id": "3f2a" + "0" * 28,
        "model-digest": "blake3:00",
        "model-trusted-types": "numpy.dtype",
    }
    assert given.read_only == [str(model)]
    assert given.read_write == [str(log.parent), str(tmp_path / "data"), str(tmp_path / "inbox")]
    assert given.env == {
        "A": "1",
        "CONVEYOR_STREAM_DATA": str(tmp_path / "data"),
        "CONVEYOR_STREAM_ROOTS": str(tmp_path / "inbox"),
    }
    assert launch["binder"] == "embedded?lease=2"  # the stored definition is left as it was


def test_a_stream_root_that_holds_the_home_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, roots=(tmp_path,))
    with pytest.raises(
        UsageError, match=r"CONVEYOR_STREAM_ROOTS names .* which holds CONVEYOR_HOME"
    ):
        sandboxed({"app": "log", "binder": "redis://127.0.0.1:6379/0"}, {}, settings, _no_runs)


def test_an_embedded_log_of_an_earlier_release_moves_into_its_own_folder(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.home.mkdir()
    (settings.home / "streams.db").write_bytes(b"the log")
    (settings.home / "streams.db-wal").write_bytes(b"its wal")
    path = embedded_log(settings)
    assert path == settings.home / "streams" / "log.db"
    assert path.read_bytes() == b"the log"
    assert (path.parent / "log.db-wal").read_bytes() == b"its wal"
    assert not (settings.home / "streams.db").exists()
    assert embedded_log(settings) == path  # once moved, left alone
