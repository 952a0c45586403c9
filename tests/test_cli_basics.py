"""The CLI starts, lists its commands and never imports heavy libraries for --help."""

from __future__ import annotations

from click.testing import CliRunner

from conveyor.cli.main import cli
from tests.cli_process import modules_loaded


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "from conveyor.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    )
    assert modules_loaded(code, ("sqlalchemy", "numpy", "sklearn", "pandas")) == []


def test_unknown_command_says_so() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_serve_defaults_to_a_port_the_platform_does_not_use() -> None:
    from conveyor.cli.serve import serve_command
    from conveyor.config import Settings
    from conveyor.serving import ServeOptions

    platform = Settings.from_env({"CONVEYOR_HOME": "/nonexistent"})
    taken = {platform.api_address[1], platform.router_address[1]}
    result = CliRunner().invoke(serve_command, ["--help"])
    assert result.exit_code == 0
    assert "[default: 8081;" in " ".join(result.output.split())
    assert 8081 not in taken
    assert ServeOptions().port == 8081
