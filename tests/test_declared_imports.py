"""Every library Conveyor's code imports is declared in pyproject.toml (or its absence handled).

A library only reached through another one's requirements, or only in the dev group,
works in this checkout and fails in a user's install (httpx, the OCI client, was one).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "conveyor"
_MISSING = {"ImportError", "ModuleNotFoundError"}
#: Imports reached only after a guarded import of the same library succeeded.
_AFTER_A_GUARD = {("src/conveyor/models/sklearn.py", "pandas")}  # _frame_column, from _matrix


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts += extra
    return {canonicalize_name(Requirement(text).name) for text in texts}


def _imports(tree: ast.AST, guarded: bool = False) -> Iterator[tuple[str, bool, int]]:
    """(top-level module, whether an ``except ImportError`` guards it, line) of every import."""
    if isinstance(tree, ast.Import):
        for alias in tree.names:
            yield alias.name.split(".")[0], guarded, tree.lineno
    elif isinstance(tree, ast.ImportFrom) and tree.level == 0 and tree.module:
        yield tree.module.split(".")[0], guarded, tree.lineno
    if isinstance(tree, ast.Try):
        caught = {
            name.id
            for handler in tree.handlers
            for name in ast.walk(handler.type or ast.Name("BaseException"))
            if isinstance(name, ast.Name)
        }
        for stmt in tree.body:
            yield from _imports(stmt, guarded or bool(caught & _MISSING))
        for part in (*tree.handlers, *tree.orelse, *tree.finalbody):
            yield from _imports(part, guarded)
        return
    for child in ast.iter_child_nodes(tree):
        yield from _imports(child, guarded)


def test_every_library_imported_is_declared_unless_its_absence_is_handled() -> None:
    declared = _declared()
    providers = metadata.packages_distributions()
    undeclared = []
    for path in sorted(SOURCE.rglob("*.py")):
        for module, guarded, line in _imports(ast.parse(path.read_text())):
            if guarded or module in sys.stdlib_module_names or module in ("conveyor", "__future__"):
                continue
            names = {canonicalize_name(d) for d in providers.get(module, [])}
            where = path.relative_to(ROOT)
            if not names & declared and (where.as_posix(), module) not in _AFTER_A_GUARD:
                undeclared.append(f"{where}:{line} imports {module} ({', '.join(names) or '?'})")
    assert undeclared == []
