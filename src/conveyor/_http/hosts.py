"""Which ``Host`` names a local service answers, against DNS rebinding.

A web page on ``evil.example`` can make its name resolve to 127.0.0.1 and
then read, with the user's browser, whatever a local service answers. The
browser still sends ``Host: evil.example``, so a service that answers only
the names it is known by is out of reach. IP literals are always accepted:
a rebinding page cannot send one of its own (the page's origin is a name).

>>> check = HostCheck(["iris.example.com"])
>>> [check.allows(h) for h in ("localhost:8080", "iris.localhost", "[::1]:80", "10.0.0.5")]
[True, True, True, True]
>>> [check.allows(h) for h in ("evil.example", "iris.example.com:80")]
[False, True]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

__all__ = ["LOOPBACK_NAMES", "HostCheck", "host_name"]

#: Names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without the port, lower-case (``[::1]`` keeps brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answers whether a request's ``Host`` is one this service is known by.

    ``names`` are fixed extra names (the configured host); ``dynamic``, when
    given, is asked about any other name (the router's host routes, which
    change while it runs). Results are remembered per header value: the check
    runs on every request, and clients send the same few values.
    """

    def __init__(
        self, names: Iterable[str] = (), dynamic: Callable[[str], bool] | None = None
    ) -> None:
        self._names = LOOPBACK_NAMES | {host_name(n) for n in names if n}
        self._dynamic = dynamic
        #: Decisions remembered per header value (read directly on the router's hot path).
        self.known: dict[str | None, bool] = {}

    def allows(self, host: str | None) -> bool:
        """Whether to answer a request with this ``Host`` (None: no header, as HTTP/1.0 may)."""
        if not host:
            return True
        known = self.known.get(host)
        if known is not None:
            return known
        name = host_name(host)
        allowed = name in self._names or name.endswith(".localhost") or _is_ip(name)
        if not allowed and self._dynamic is not None:
            # Not remembered: the name may be routed (or unrouted) later.
            return self._dynamic(name)
        if len(self.known) < 1024:  # a client cycling names must not grow it without bound
            self.known[host] = allowed
        return allowed
