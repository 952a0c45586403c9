"""``import conveyor`` is the user's Python API: its names, its version and its cost stay honest."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
import conveyor.api
from conveyor._version import __version__
from conveyor.cli.main import cli
from tests.cli_process import modules_loaded

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "conveyor" / "__init__.py"


def _type_checking_names() -> set[str]:
    """The names ``conveyor/__init__.py`` imports under ``if TYPE_CHECKING:``."""
    names: set[str] = set()
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                assert stmt.module == "conveyor.api", ast.unparse(stmt)
                names.update(alias.asname or alias.name for alias in stmt.names)
    return names


def test_all_is_sorted_and_every_name_is_importable() -> None:
    assert conveyor.__all__ == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None, name
        exec(f"from conveyor import {name}", {})


def test_lazy_names_agree_with_the_type_checking_block_and_the_api_module() -> None:
    lazy = set(conveyor.__all__) - {"__version__"}
    assert _type_checking_names() == lazy
    assert set(conveyor.api.__all__) == lazy
    for name in lazy:
        assert getattr(conveyor, name) is getattr(conveyor.api, name), name


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = conveyor.no_such_thing


def test_import_conveyor_loads_no_heavy_library() -> None:
    heavy = ("numpy", "sklearn", "sqlalchemy", "pandas", "fastapi", "conveyor.api")
    assert modules_loaded("import conveyor", heavy) == []


def test_version_is_one_value_everywhere() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    assert conveyor.__version__ == __version__
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"conveyor, version {__version__}"
