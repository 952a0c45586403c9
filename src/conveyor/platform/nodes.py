"""YAML read node by node, so every value still knows the file, line and column it came from.

:class:`NodeReader` records an error and drops the value it concerns
(:meth:`NodeReader.attempt`), so one pass over a document reports all of its
mistakes, each as ``conveyor.yml:7:16: applications[1].instances: ...``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn, TypeVar, cast

import yaml  # type: ignore[import-untyped]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped]
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode  # type: ignore[import-untyped]

__all__ = ["TAG", "At", "NodeReader"]

TAG = "tag:yaml.org,2002:"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])(?:IB?|B)?", re.IGNORECASE)  # 512M, 512MB, 512Mi
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_T = TypeVar("_T")


class _Skip(Exception):
    """Raised after an error is recorded, to drop the value being read and go on."""


class At(NamedTuple):
    """A YAML node and the field path that leads to it (``applications[1].instances``)."""

    node: Node
    field: str

    def item(self, index: int) -> At:
        return At(self.node.value[index], f"{self.field}[{index}]")


class NodeReader:
    """Reads typed values out of composed YAML nodes, collecting every error on the way."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.constructor = SafeConstructor()
        self.flattened: dict[int, dict[str, At]] = {}
        self._errors: dict[str, tuple[int, int]] = {}  # message -> where, for the order
        self.ignored: list[str] = []

    def note(self, at: At, message: str) -> None:
        mark = at.node.start_mark
        where = f"{self.source}:{mark.line + 1}:{mark.column + 1}:"
        text = f"{where} {at.field}: {message}" if at.field else f"{where} {message}"
        self._errors.setdefault(text, (mark.line, mark.column))  # an alias: the same node again

    @property
    def errors(self) -> list[str]:
        """Every error recorded, in the order they appear in the document."""
        return sorted(self._errors, key=self._errors.__getitem__)

    def fail(self, at: At, message: str) -> NoReturn:
        self.note(at, message)
        raise _Skip

    def skip(self) -> NoReturn:
        """Drop the value being read, its errors already recorded."""
        raise _Skip

    def attempt(self, default: _T, read: Callable[..., _T], *args: Any) -> _T:
        """``read(*args)``, or ``default`` when it failed (its error is recorded)."""
        try:
            return read(*args)
        except _Skip:
            return default

    def got(self, at: At) -> str:
        if isinstance(at.node, MappingNode | SequenceNode):
            return "a mapping" if isinstance(at.node, MappingNode) else "a list"
        return "nothing" if at.node.tag == TAG + "null" else repr(at.node.value)

    def mapping(
        self, at: At, allowed: tuple[str, ...], *, listed: tuple[str, ...] = ()
    ) -> dict[str, At]:
        """The keys of a mapping; duplicates and keys outside ``allowed`` (when given) are errors.

        ``listed`` is what the unknown-key message names as valid (``allowed`` if empty).
        """
        if not isinstance(at.node, MappingNode):
            self.fail(at, f"expected a mapping, got {self.got(at)}")
        if id(at.node) in self.flattened:  # the same node reached again through an alias
            return self.flattened[id(at.node)]
        name = f"{at.field}." if at.field else ""
        own: dict[str, Node] = {}
        for key, _ in at.node.value:
            text = "<<" if key.tag == TAG + "merge" else self.text(At(key, at.field), "a key")
            if text in own and text != "<<":
                first = own[text].start_mark.line + 1
                self.note(At(key, name + text), f"given twice (first on line {first})")
            own[text] = key
        try:  # YAML merge keys (<<: *defaults) are how CF manifests share settings
            self.constructor.flatten_mapping(at.node)
        except yaml.MarkedYAMLError as error:
            self.fail(at, f"cannot merge: {error.problem}")
        result: dict[str, At] = {}
        for key, value in at.node.value:  # merged pairs come first: the mapping's own keys win
            text = self.attempt("", self.text, At(key, at.field), "a key")
            if allowed and text not in allowed:
                if text:
                    valid = ", ".join(listed or allowed)
                    self.note(At(key, name + text), f"unknown key; valid keys: {valid}")
                continue
            result[text] = At(value, name + text)
        self.flattened[id(at.node)] = result
        return result

    def sequence(self, at: At, what: str) -> list[At]:
        if not isinstance(at.node, SequenceNode):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        return [at.item(index) for index in range(len(at.node.value))]

    def scalar(self, at: At, what: str) -> object:
        if not isinstance(at.node, ScalarNode):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        if at.node.tag == TAG + "str":
            return cast(str, at.node.value)
        if at.node.tag not in (TAG + "int", TAG + "float", TAG + "bool", TAG + "null"):
            self.fail(at, f"expected {what}, got a value tagged {at.node.tag}")
        return cast(object, self.constructor.construct_object(at.node))

    def text(self, at: At, what: str = "text") -> str:
        value = self.scalar(at, what)
        if not isinstance(value, str):
            self.fail(at, f"expected {what}, got {self.got(at)}; quote it")
        if not value.strip():
            self.fail(at, f"expected {what}, got an empty string")
        return value

    def flag(self, at: At) -> bool:
        value = self.scalar(at, "true or false")
        if not isinstance(value, bool):
            self.fail(at, f"expected true or false, got {self.got(at)}")
        return value

    def number(self, at: At, *, whole: bool) -> float:
        what = "a whole number ≥ 0" if whole else "a number of seconds > 0"
        value = self.scalar(at, what)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)  # .nan and .inf would disable a health check's deadline
            or (whole and (not isinstance(value, int) or value < 0))
            or (not whole and value <= 0)
        ):
            self.fail(at, f"expected {what}, got {self.got(at)}")
        return value

    def size(self, at: At) -> int:
        value = self.scalar(at, "a size like 512M or 1G")
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or float(match[1]) <= 0:
            unit = "; add a unit (K, M or G)" if type(value) is int else ""
            self.fail(at, f"expected a size like 512M or 1G, got {self.got(at)}{unit}")
        return int(float(match[1]) * _UNITS[match[2].upper()])
