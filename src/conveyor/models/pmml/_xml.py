"""A small, hardened XML reader that keeps the line number of every element.

PMML documents arrive from other tools, so the parser refuses document type
declarations and entity definitions outright (no external entities, no
"billion laughs"); PMML never needs them. Namespaces are dropped from tag
names because PMML 3.x-4.4 documents differ only in their namespace URI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.parsers import expat

from conveyor.errors import ModelError

__all__ = ["Element", "parse", "unsupported"]


class Element:
    """One XML element: tag (without namespace), attributes, children, text, line."""

    __slots__ = ("attrib", "children", "line", "source", "tag", "text")

    def __init__(self, tag: str, attrib: dict[str, str], line: int, source: str) -> None:
        self.tag = tag
        self.attrib = attrib
        self.children: list[Element] = []
        self.text = ""
        self.line = line
        self.source = source

    def get(self, name: str, default: Any = None) -> Any:
        return self.attrib.get(name, default)

    def require(self, name: str) -> str:
        """The attribute's value, or a ModelError naming the element and its line."""
        value = self.attrib.get(name)
        if value is None:
            raise ModelError(f"{self.where}: <{self.tag}> lacks the required attribute {name!r}")
        return value

    def find(self, tag: str) -> Element | None:
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def findall(self, tag: str) -> list[Element]:
        return [child for child in self.children if child.tag == tag]

    def iter(self, tag: str | None = None) -> Iterator[Element]:
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            yield from child.iter(tag)

    @property
    def where(self) -> str:
        return f"{self.source}, line {self.line}"

    def __repr__(self) -> str:
        return f"<{self.tag} line {self.line}>"


def unsupported(element: Element, what: str | None = None) -> ModelError:
    """The error for a construct the evaluator does not implement, naming element and line."""
    detail = what or f"<{element.tag}>"
    return ModelError(
        f"{element.where}: {detail} is not supported by Conveyor's PMML evaluator",
        hint="Re-export the model without it, or score it with a JVM-based evaluator.",
    )


def parse(data: bytes, source: str) -> Element:
    """Parse a document into Elements; DTDs and entities are refused."""
    # No namespace processing: PMML 3.x-4.4 differ only in the default namespace URI,
    # and prefixed elements (inline table cells such as data:input) keep their local name.
    parser = expat.ParserCreate()
    stack: list[Element] = []
    root: list[Element] = []
    texts: list[list[str]] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        if ":" in tag:
            tag = tag.rsplit(":", 1)[1]
        el = Element(tag, attrs, parser.CurrentLineNumber, source)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)
        texts.append([])

    def end(tag: str) -> None:
        el = stack.pop()
        parts = texts.pop()
        if parts:
            el.text = "".join(parts)

    def chars(data: str) -> None:
        if texts:
            texts[-1].append(data)

    def refuse(*_args: Any) -> Any:
        raise ModelError(
            f"{source}, line {parser.CurrentLineNumber}: document type declarations and "
            "entities are not allowed in a PMML document"
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ModelError(
            f"{source}, line {exc.lineno}: not well-formed XML ({expat.errors.messages[exc.code]})"
        ) from exc
    except (LookupError, ValueError) as exc:  # an unknown encoding declaration, say
        raise ModelError(f"{source}: cannot read the document ({exc})") from exc
    if not root:
        raise ModelError(f"{source}: empty document")
    return root[0]
