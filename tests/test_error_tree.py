"""The exception tree drawn in ``conveyor/errors.py`` names every exception class, under its parent.

The classes are found by reading the source (no module is imported), so an
exception added anywhere in ``src/conveyor`` must also be drawn.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import conveyor.errors

SRC = Path(__file__).resolve().parents[1] / "src" / "conveyor"
#: A branch of the drawing: its column tells the depth, the word after it the class.
BRANCH = re.compile(r"^(?P<lead>[\s│]*)[├└]── (?P<name>\w+)")


def _drawn() -> dict[str, str]:
    """Each class in the docstring's drawing -> the class drawn as its parent."""
    doc = conveyor.errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-1, "ConveyorError")]
    assert re.search(r"^\s*ConveyorError\s*$", doc, re.MULTILINE), "the root is not drawn"
    for line in doc.splitlines():
        match = BRANCH.match(line)
        if match is None:
            continue
        depth, name = len(match["lead"]), match["name"]
        while stack[-1][0] >= depth:
            stack.pop()
        assert name not in parents, f"{name} is drawn twice"
        parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def _classes() -> list[tuple[str, list[str], str]]:
    """Every class defined in the package: (name, its base names, where it is defined)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                found.append((node.name, bases, f"{path.relative_to(SRC.parent)}:{node.lineno}"))
    return found


def _builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def _exceptions() -> dict[str, tuple[str, str]]:
    """Every public exception class of the package -> (its parent in our tree, where)."""
    classes = _classes()
    ours: dict[str, tuple[list[str], str]] = {}
    changed = True
    while changed:  # a class is an exception when a base is a builtin one or one of ours
        changed = False
        for name, bases, where in classes:
            if where in {w for _, w in ours.values()}:
                continue
            if any(_builtin_exception(b) or b in ours for b in bases):
                # Two exceptions of one name would make the drawing ambiguous.
                assert name not in ours, f"{name} is defined twice: {ours[name][1]}, {where}"
                ours[name] = (bases, where)
                changed = True
    return {
        name: (next((b for b in bases if b in ours), bases[0]), where)
        for name, (bases, where) in ours.items()
        if not name.startswith("_")  # private to its module; never reaches a user
    }


def test_every_exception_class_is_drawn_under_its_parent() -> None:
    drawn = _drawn()
    exceptions = _exceptions()
    missing = sorted(
        f"{name} ({where})"
        for name, (_, where) in exceptions.items()
        if name not in drawn and name != "ConveyorError"
    )
    assert not missing, f"not drawn in conveyor/errors.py's docstring: {missing}"
    wrong = {
        name: f"drawn under {drawn[name]}, defined under {parent} ({where})"
        for name, (parent, where) in exceptions.items()
        if name in drawn and drawn[name] != parent
    }
    assert not wrong, wrong


def test_every_drawn_class_exists() -> None:
    assert set(_drawn()) <= set(_exceptions()), set(_drawn()) - set(_exceptions())


def test_every_exception_derives_from_the_root() -> None:
    exceptions = _exceptions()
    for name, (_, where) in exceptions.items():
        chain = [name]
        while chain[-1] != "ConveyorError":
            up = exceptions.get(chain[-1], ("", ""))[0]
            assert up in exceptions, f"{name} ({where}) does not derive from ConveyorError"
            chain.append(up)
