"""Reading a manifest's routes: ``routes``, ``route``/``host``/``path``, CF's route flags.

A mixin of the manifest reader (:mod:`.manifest`): it fails and records what it
ignored through the reader, at the YAML node's file:line:column.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.platform.nodes import At, NodeReader
from conveyor.platform.spec import RouteSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["NAME", "RouteReader"]

#: A DNS label: what app names, process kinds and host labels must be.
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"/|(/[^/\s?#]+)+")
_ROUTE_KEYS = ("host", "path", "strip-prefix", "route", "protocol")


class RouteReader(NodeReader):
    """The route part of the manifest reader."""

    base_dir: Path | None
    ignored: list[str]

    def routes(self, keys: Mapping[str, At], name: str) -> tuple[RouteSpec, ...] | None:
        """``routes``, or what ``no-route`` / ``random-route`` make of none (None: the default)."""
        routes = None
        if "routes" in keys:
            items = self.sequence(keys["routes"], "a list of routes")
            found = [self.attempt(None, self.route, item) for item in items]
            routes = tuple(route for route in found if route is not None)
        if "default-route" in keys:  # CF's default too: a route when none is listed
            self.flag(keys["default-route"])
        if "no-route" in keys and self.flag(keys["no-route"]):
            if routes:
                self.fail(keys["no-route"], "contradicts the 'routes' listed; remove one")
            return ()
        if "random-route" in keys and self.flag(keys["random-route"]) and routes is None:
            # Stable for one checkout, so a second push keeps the route, as CF's does.
            seed = f"{self.base_dir.resolve() if self.base_dir else ''}:{name}"
            return (RouteSpec(host=f"{name[:50]}-{_digest(seed)}.localhost"),)
        return routes

    def route(self, at: At) -> RouteSpec:
        keys = self.mapping(at, _ROUTE_KEYS)
        host = path = None
        if "protocol" in keys:
            protocol = self.text(keys["protocol"], "http1, http2 or tcp")
            if protocol == "tcp":
                self.fail(keys["protocol"], "TCP routes are not supported; the router speaks HTTP")
            if protocol != "http1":
                self.ignored.append(f"routes protocol {protocol} (the router speaks HTTP/1.1)")
        if "route" in keys:
            for other in ("host", "path"):
                if other in keys:
                    self.fail(keys[other], "give either 'route' or 'host'/'path', not both")
            text = self.text(keys["route"], "a route like host.domain/path")
            host, slash, rest = text.partition("/")
            if ":" in host:
                self.fail(keys["route"], f"{text!r} has a port: TCP routes are not supported")
            host = self.host(keys["route"], host)
            path = self.path(keys["route"], slash + rest) if slash else None
        if "host" in keys:
            host = self.host(keys["host"], self.text(keys["host"], "a host name"))
        if "path" in keys:
            path = self.path(keys["path"], self.text(keys["path"], "a path"))
        if host is None and path is None:
            self.fail(at, "a route needs a host, a path or both")
        flag = keys.get("strip-prefix")
        return RouteSpec(host=host, path=path, strip_prefix=self.flag(flag) if flag else False)

    def host(self, at: At, host: str) -> str:
        host = host.lower()
        if len(host) > 253 or not all(NAME.fullmatch(label) for label in host.split(".")):
            self.fail(at, f"{host!r} is not a valid host name")
        return host

    def path(self, at: At, path: str) -> str:
        if not _PATH.fullmatch(path):
            self.fail(at, f"{path!r} must start with '/' and not end with one, "
                      "without spaces, '?' or '#' (for example /iris)")  # fmt: skip
        return path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
