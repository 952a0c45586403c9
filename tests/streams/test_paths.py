"""What files stream apps can reach: the data folder and the operator's roots, never the home."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import Settings
from conveyor.streams import parse_stream, validate_stream
from conveyor.streams.binders import Binder
from conveyor.streams.catalogue import OptionError
from conveyor.streams.errors import DslError, StreamError
from conveyor.streams.messages import Message
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.streams.helpers import collect, run_app


@pytest.fixture
def confined(tmp_path: Path) -> Settings:
    """A home, a data folder and one extra root, side by side; nothing else is reachable."""
    (tmp_path / "root").mkdir()
    return Settings.from_env(
        {
            "CONVEYOR_HOME": str(tmp_path / "home"),
            "CONVEYOR_STREAM_DATA": str(tmp_path / "data"),
            "CONVEYOR_STREAM_ROOTS": str(tmp_path / "root"),
        }
    )


def options(definition: str, settings: Settings) -> list[dict[str, object]]:
    return [a.options for a in validate_stream(parse_stream(definition), definition, settings)]


def test_relative_paths_go_to_the_data_folder(confined: Settings) -> None:
    data = confined.stream_data.resolve()
    (sink,) = options(":t > file --path=out/audit.jsonl", confined)
    assert sink["path"] == str(data / "out" / "audit.jsonl")
    (sql,) = options(":t > sql --url=sqlite:///events.db --table=e", confined)
    assert sql["url"] == f"sqlite:///{data / 'events.db'}"
    root = confined.stream_roots[0]
    (sink,) = options(f":t > file --path={root}/x.jsonl", confined)
    assert sink["path"] == str(root.resolve() / "x.jsonl")
    # A database server is not a file: its URL is left as it is.
    (pg,) = options(":t > sql --url=postgresql://db.example/x --table=e", confined)
    assert pg["url"] == "postgresql://db.example/x"


@pytest.mark.parametrize(
    ("definition", "error"),
    [
        (":t > file --path=/etc/conveyor.jsonl", "/etc/conveyor.jsonl is outside the folders"),
        (":t > file --path=../escape.jsonl", "escape.jsonl is outside the folders"),
        ("file --directory=/etc | log", "/etc is outside the folders"),
        (":t > sql --url=sqlite:////etc/x.db --table=e", "/etc/x.db is outside the folders"),
        (":t > sql --url=sqlite://host/x.db --table=e", "a SQLite URL has no host"),
        (":t > sql --url=sqlite:///file:x?uri=true --table=e", "uri=true"),
        (":t > throughput --report=/tmp/report.json", "/tmp/report.json is outside the folders"),
    ],
)
def test_a_path_outside_the_allowed_folders_is_refused_at_create(
    confined: Settings, definition: str, error: str
) -> None:
    with pytest.raises(DslError) as info:
        options(definition, confined)
    assert info.value.code == "PATH_NOT_ALLOWED"
    assert error in str(info.value)
    if "outside" in error:
        assert "CONVEYOR_STREAM_ROOTS" in str(info.value)


def test_the_home_is_never_reachable_even_under_a_root(tmp_path: Path) -> None:
    wide = Settings.from_env(
        {"CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_STREAM_ROOTS": str(tmp_path)}
    )
    for definition in (
        f":t > file --path={tmp_path}/home/platform/token",
        f"file --directory={tmp_path}/home/platform | log",
        f":t > sql --url=sqlite:///{tmp_path}/home/registry.db --table=t",
    ):
        with pytest.raises(DslError, match="inside CONVEYOR_HOME"):
            options(definition, wide)


def test_a_symlink_is_resolved_before_the_check(confined: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = confined.stream_roots[0] / "link"
    link.symlink_to(outside)
    with pytest.raises(DslError, match=r"elsewhere/x\.jsonl is outside"):
        options(f":t > file --path={link}/x.jsonl", confined)


def test_an_app_refuses_at_start_a_path_its_folders_do_not_allow(
    binder: Binder, confined: Settings
) -> None:
    spec = LaunchSpec(app="file", input="p.in", group="p", options={"path": "/etc/out.jsonl"})
    with pytest.raises(OptionError, match="is outside the folders stream apps may use"):
        StreamAppRuntime(spec, confined, binder=binder)


def test_a_relative_sink_path_is_written_in_the_data_folder(
    binder: Binder, confined: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "root")  # the folder the app runs in does not matter
    spec = LaunchSpec(app="file", input="p.in", group="p", options={"path": "audit.jsonl"})
    runtime = StreamAppRuntime(spec, confined, binder=binder)
    runtime.start()
    runtime.app.write([Message({"n": 1})])
    runtime.app.close()
    assert (confined.stream_data / "audit.jsonl").read_text() == '{"n":1}\n'
    assert not (tmp_path / "root" / "audit.jsonl").exists()


def test_the_file_source_reads_only_inside_its_folder(
    binder: Binder, confined: Settings, tmp_path: Path
) -> None:
    inbox = confined.stream_roots[0] / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"secret": true}\n')
    (inbox / "leak.jsonl").symlink_to(secret)
    (inbox / "ok.jsonl").write_text('{"ok": true}\n')
    app = run_app(
        binder, confined, app="file", output="f.out", stream="f",
        options={"directory": str(inbox), "pattern": "*.jsonl", "interval": "0.05"},
    )  # fmt: skip
    try:
        (only,) = collect(binder, "f.out", "f", 1)
    finally:
        app.stop()
    assert only.payload == {"ok": True}
    assert secret.exists()
    assert (inbox / "leak.jsonl").is_symlink()  # neither read nor renamed
    with pytest.raises(StreamError, match="must name files inside --directory"):
        run_app(
            binder, confined, app="file", output="f.out", stream="f",
            options={"directory": str(inbox), "pattern": "../*"},
        )  # fmt: skip
