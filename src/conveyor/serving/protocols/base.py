"""What a wire protocol is to the scoring app: its routes, its handler, its OpenAPI paths.

A protocol module builds one :class:`Protocol` and the registry
(:data:`conveyor.serving.protocols.PROTOCOLS`) lists it; the app's routing
table and the OpenAPI document are built from the registry at start-up, so
adding a protocol touches its own module and one line of the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Structural

from conveyor.serving.errors import RequestError
from conveyor.serving.http import Request, Response
from conveyor.serving.service import Scoring, ServedModel

__all__ = ["Handler", "Page", "Protocol", "Route", "Site", "unknown_model"]


class Site(Structural):
    """What a page sees of the app serving it."""

    served: ServedModel
    #: False while the service shuts down.
    ready: bool


#: Turns a request's payload into typed columns and says how to shape the answer (a POST).
Handler = Callable[[ServedModel, Request], Scoring]
#: Answers a GET or HEAD without a body: health, metadata.
Page = Callable[[Site], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """One path a protocol answers: a scoring POST (``score``) or a GET page (``page``).

    Neither: the path is known to be nobody's (404 after the method check).
    """

    path: str
    score: Handler | None = None
    page: Page | None = None


def _no_other_paths(served: ServedModel, path: str) -> Route | None:
    return None


@dataclass(frozen=True)
class Protocol:
    """One wire protocol of the scoring service."""

    #: Its label in the metrics (``protocol="v2"``).
    name: str
    #: The exact paths it answers for the served model: the app's table, built once.
    routes: Callable[[ServedModel], list[Route]]
    #: The OpenAPI path items it adds to the document, by path.
    openapi: Callable[[ServedModel], dict[str, Any]]
    #: For a path no table entry has: its Route (an alias the table does not
    #: list), None when it is not this protocol's, or RequestError 404 for
    #: another model's name or version.
    resolve: Callable[[ServedModel, str], Route | None] = _no_other_paths
    #: Paths under this prefix that are not scoring routes (pages, unknown
    #: paths) count under this protocol's label too; the others as "other".
    prefix: str | None = None


def unknown_model(name: str, served: ServedModel) -> RequestError:
    """The 404 for a path that names another model."""
    return RequestError(
        f"unknown model {name!r}; this server serves {served.name!r}", status=404, kind="not_found"
    )
