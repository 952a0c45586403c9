"""The stream DSL's syntax tree: what a definition says, independent of how it was written.

Positions are kept for error messages but take no part in equality, so a
tree printed with :func:`to_text` and parsed again compares equal.

>>> from conveyor.streams.dsl import parse_stream
>>> tree = parse_stream(":orders > enrich: python --function=m:f > :enriched")
>>> tree.source.name, tree.apps[0].label, tree.sink.name
('orders', 'enrich', 'enriched')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor._dsl import quote_value

__all__ = ["AppNode", "Destination", "Option", "StreamNode", "quote_value", "to_text"]


@dataclass(frozen=True)
class Option:
    """``--key=value``; the value is always text until the catalogue types it."""

    key: str
    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class AppNode:
    """One app in the pipe: ``label: name --key=value ...``."""

    name: str
    label: str | None = None
    options: tuple[Option, ...] = ()
    position: int = field(default=0, compare=False)

    @property
    def reference(self) -> str:
        """How the stream names this app: its label, or else its app name."""
        return self.label or self.name

    def option_map(self) -> dict[str, str]:
        return {o.key: o.value for o in self.options}


@dataclass(frozen=True)
class Destination:
    """A named destination ``:name``; ``:stream.label`` is a tap on another stream's app.

    A name may hold SCDF's wildcards and separators (``:orders.*``, ``:a/*#``) and be
    followed by options (``:orders --group=audit > log``).
    """

    name: str
    position: int = field(default=0, compare=False)
    options: tuple[Option, ...] = ()

    def option_map(self) -> dict[str, str]:
        return {o.key: o.value for o in self.options}

    @property
    def is_tap(self) -> bool:
        return "." in self.name


@dataclass(frozen=True)
class StreamNode:
    """A whole definition: an optional input destination, apps, an optional output.

    ``unbound`` is true when the apps are joined by ``||``: SCDF's group of apps that
    are deployed together but not wired to one another (``app1 || app2``).
    """

    apps: tuple[AppNode, ...]
    source: Destination | None = None
    sink: Destination | None = None
    name: str | None = None
    unbound: bool = False


def _options_text(options: tuple[Option, ...]) -> list[str]:
    return [f"--{o.key}={quote_value(o.value)}" for o in options]


def _app_text(app: AppNode) -> str:
    return " ".join(
        [f"{app.label}: {app.name}" if app.label else app.name, *_options_text(app.options)]
    )


def _destination_text(destination: Destination) -> str:
    return " ".join([f":{destination.name}", *_options_text(destination.options)])


def to_text(stream: StreamNode) -> str:
    """Print a tree back as a definition that parses to an equal tree."""
    parts: list[str] = []
    if stream.name:
        parts.append(f"{stream.name} =")
    if stream.source:
        parts.append(f"{_destination_text(stream.source)} >")
    parts.append((" || " if stream.unbound else " | ").join(_app_text(a) for a in stream.apps))
    if stream.sink:
        sink = _destination_text(stream.sink)
        parts.append(f"> {sink}" if stream.apps else sink)
    return " ".join(p for p in parts if p)
