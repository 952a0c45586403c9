"""The route table: which app answers a host or path prefix, and which of its instances are ready.

The supervisor (through :meth:`RouteTable.apply`) and the control plane
update it at run time; the router reads it on every request, so lookups are
dictionary hits and round-robin is a counter.

>>> table = RouteTable()
>>> table.add_route(Route("iris", path="/iris"))
>>> table.set_backend("iris", "iris/0", "127.0.0.1", 8001)
>>> table.set_backend("iris", "iris/1", "127.0.0.1", 8002)
>>> match = table.match("127.0.0.1:8080", "/iris/predict")
>>> [b.port for b in table.pick(match.app)], [b.port for b in table.pick(match.app)]
([8001, 8002], [8002, 8001])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.errors import UsageError
from conveyor.platform.errors import PlatformError
from conveyor.platform.split import Split
from conveyor.platform.supervisor import Event

__all__ = ["Backend", "Match", "Route", "RouteTable", "overlaps"]


@dataclass(frozen=True)
class Route:
    """A host name and/or path prefix that leads to an app.

    The path is kept as the client sent it (as Cloud Foundry's gorouter does),
    unless ``strip_prefix`` is set: then ``/iris/predict`` reaches the app as
    ``/predict`` with ``X-Forwarded-Prefix: /iris`` so it can still build URLs.
    """

    app: str
    host: str | None = None
    path: str | None = None
    strip_prefix: bool = False

    @property
    def text(self) -> str:
        """How the route is shown: ``host/path``, ``host`` or ``/path``."""
        return (self.host or "") + (self.path or "")

    def __post_init__(self) -> None:
        if self.host is None and self.path is None:
            raise UsageError(f"a route of app {self.app!r} needs a host, a path or both")
        if self.path is not None and (
            not self.path.startswith("/") or (self.path != "/" and self.path.endswith("/"))
        ):
            raise UsageError(
                f"route path {self.path!r} of app {self.app!r} must start with '/' "
                "and not end with one (for example /iris)"
            )
        if self.host is not None and (not self.host or self.host != self.host.lower()):
            raise UsageError(f"route host {self.host!r} of app {self.app!r} must be lower case")


@dataclass
class Backend:
    """One instance the router can send requests to."""

    key: str
    host: str
    port: int
    ready: bool = True
    #: The app revision the instance runs (0 when nobody said).
    revision: int = 0


@dataclass
class _App:
    name: str
    backends: dict[str, Backend] = field(default_factory=dict)
    ready: list[Backend] = field(default_factory=list)
    turn: int = 0
    #: While a canary runs: how requests divide between its two revisions.
    split: Split | None = None

    def refresh(self) -> None:
        self.ready = [b for _, b in sorted(self.backends.items()) if b.ready]


@dataclass(frozen=True)
class Match:
    """What a request's host and path resolved to."""

    app: str
    route: Route
    #: The path to send upstream (prefix removed when the route strips it).
    path: str


class RouteTable:
    """Routes to apps and the ready instances of each app."""

    def __init__(self) -> None:
        self._apps: dict[str, _App] = {}
        self._by_host: dict[tuple[str, str | None], Route] = {}
        self._by_path: dict[str, Route] = {}

    # -- routes ---------------------------------------------------------------

    def add_route(self, route: Route) -> None:
        """Send ``route.host``/``route.path`` to ``route.app``; raises if another app has it."""
        owner = self.owner(route)
        if owner is not None and owner != route.app:
            where = " ".join(filter(None, [route.host, route.path]))
            raise PlatformError(
                f"route {where} is already taken by app {owner!r}",
                hint=f"Choose another host or path for {route.app!r}, or unmap it from {owner!r}.",
            )
        if route.host is not None:
            self._by_host[(route.host, route.path)] = route
        else:
            assert route.path is not None
            self._by_path[route.path] = route
        self._apps.setdefault(route.app, _App(route.app))

    def owner(self, route: Route) -> str | None:
        """The app that has ``route``'s host and path now, if any."""
        taken = (
            self._by_host.get((route.host, route.path))
            if route.host is not None
            else self._by_path.get(route.path or "")
        )
        return None if taken is None else taken.app

    def overlapping(self, route: Route) -> Route | None:
        """Another app's route that would share requests with ``route`` (see :func:`overlaps`)."""
        for other in self.routes():
            if other.app != route.app and overlaps(route, other):
                return other
        return None

    def set_routes(self, app: str, routes: list[Route]) -> None:
        """Replace ``app``'s routes (its instances stay); raises if another app has one."""
        for route in routes:
            owner = self.owner(route)
            if owner is not None and owner != app:
                self.add_route(route)  # raises the "already taken" error
        self._by_host = {k: r for k, r in self._by_host.items() if r.app != app}
        self._by_path = {k: r for k, r in self._by_path.items() if r.app != app}
        for route in routes:
            self.add_route(route)

    def remove_app(self, app: str) -> None:
        """Forget an app's routes and instances."""
        self._by_host = {k: r for k, r in self._by_host.items() if r.app != app}
        self._by_path = {k: r for k, r in self._by_path.items() if r.app != app}
        self._apps.pop(app, None)

    def serves_host(self, name: str) -> bool:
        """Whether some app has a route for host ``name`` (lower-case, without a port)."""
        return any(host == name for host, _ in self._by_host)

    def routes(self, app: str | None = None) -> list[Route]:
        every = [*self._by_host.values(), *self._by_path.values()]
        return [r for r in every if app is None or r.app == app]

    # -- instances ------------------------------------------------------------

    def set_backend(
        self, app: str, key: str, host: str, port: int, *, ready: bool = True, revision: int = 0
    ) -> None:
        """Add or move instance ``key`` of ``app`` (running ``revision``) to ``host:port``."""
        entry = self._apps.setdefault(app, _App(app))
        entry.backends[key] = Backend(key, host, port, ready, revision)
        entry.refresh()

    def set_split(self, app: str, split: Split | None) -> None:
        """Divide ``app``'s requests between two revisions (a canary), or stop (None)."""
        self._apps.setdefault(app, _App(app)).split = split

    def split(self, app: str) -> Split | None:
        entry = self._apps.get(app)
        return None if entry is None else entry.split

    def set_ready(self, app: str, key: str, ready: bool) -> None:
        entry = self._apps.get(app)
        if entry is not None and key in entry.backends:
            entry.backends[key].ready = ready
            entry.refresh()

    def remove_backend(self, app: str, key: str) -> None:
        entry = self._apps.get(app)
        if entry is not None and entry.backends.pop(key, None) is not None:
            entry.refresh()

    def backends(self, app: str) -> list[Backend]:
        entry = self._apps.get(app)
        return [] if entry is None else list(entry.backends.values())

    def apply(self, event: Event) -> None:
        """Follow a supervisor event: ready instances in, everything else out."""
        key = event.key
        if event.kind == "ready":
            details = event.details
            self.set_backend(
                event.app, key, details["host"], details["port"], revision=event.revision
            )
        elif event.kind in ("unready", "crashed", "stopping", "stopped"):
            self.remove_backend(event.app, key)

    # -- the hot path ---------------------------------------------------------

    def match(self, host: str | None, path: str) -> Match | None:
        """The route for a request's ``Host`` header and path, most specific first."""
        name = (host or "").rsplit(":", 1)[0].lower() if host and not host.startswith("[") else host
        if self._by_host and name:
            for prefix in _prefixes(path):
                route = self._by_host.get((name, prefix))
                if route is not None:
                    return Match(route.app, route, _upstream_path(route, path))
            route = self._by_host.get((name, None))
            if route is not None:
                return Match(route.app, route, path)
        for prefix in _prefixes(path):
            route = self._by_path.get(prefix)
            if route is not None:
                return Match(route.app, route, _upstream_path(route, path))
        return None

    def pick(self, app: str) -> list[Backend]:
        """The app's ready instances in round-robin order: the first to try, then the fallbacks."""
        entry = self._apps.get(app)
        if entry is None or not entry.ready:
            return []
        ready = entry.ready
        if entry.split is not None:
            return entry.split.order(ready)
        turn = entry.turn % len(ready)
        entry.turn = turn + 1
        return ready[turn:] + ready[:turn]


def overlaps(a: Route, b: Route) -> bool:
    """Whether some request could match both routes, so one app could take the other's traffic.

    They must name the same host (or both none); then the paths overlap when
    one is the other or lies under it (``/sc/predict`` under ``/sc``), and a
    host route without a path covers the whole host. The root ``/`` is the
    catch-all: it gets only what no other route matches, so it overlaps only
    another ``/``.

    >>> overlaps(Route("s", path="/sc/predict"), Route("sc", path="/sc"))
    True
    >>> overlaps(Route("s", path="/scores"), Route("sc", path="/sc"))
    False
    """
    if a.host != b.host:
        return False
    if a.path is None or b.path is None or a.path == b.path:
        return True
    if "/" in (a.path, b.path):
        return False
    return a.path.startswith(b.path + "/") or b.path.startswith(a.path + "/")


def _prefixes(path: str) -> list[str]:
    """``/a/b/c?q`` → ``/a/b/c``, ``/a/b``, ``/a``, ``/``: candidate prefixes, longest first."""
    bare = path.split("?", 1)[0]
    out = []
    while bare and bare != "/":
        out.append(bare)
        bare = bare[: bare.rfind("/")]
    out.append("/")
    return out


def _upstream_path(route: Route, path: str) -> str:
    if not route.strip_prefix or route.path is None or route.path == "/":
        return path
    rest = path[len(route.path) :]
    return rest if rest.startswith("/") else "/" + rest
