"""Where stream apps may read and write files: the data folder and the operator's roots.

A stream author chooses paths (``file --path``, ``file --directory``, ``sql
--url=sqlite:///...``, ``throughput --report``), but the apps run as the
platform's user, so every such path is confined:

- a relative path resolves inside the data folder (``CONVEYOR_STREAM_DATA``,
  default ``~/conveyor-data``), not in whatever folder the app runs in;
- after symlinks are resolved, it must lie in the data folder or in one of the
  operator's ``CONVEYOR_STREAM_ROOTS``;
- nothing inside ``$CONVEYOR_HOME`` (the token, the registry, the logs) is ever
  reachable, whatever the roots say.

>>> paths = StreamPaths(Path("/srv/data"), (), home=Path("/srv/home"))
>>> str(paths.confine("out/audit.jsonl", "path"))
'/srv/data/out/audit.jsonl'
>>> paths.sqlite_url("sqlite:///events.db", "url")
'sqlite:////srv/data/events.db'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.config import Settings
from conveyor.streams.errors import StreamError

__all__ = ["PathNotAllowed", "StreamPaths"]


class PathNotAllowed(StreamError):
    """A path a stream app was given lies outside the folders stream apps may use."""

    exit_code = 2


@dataclass(frozen=True)
class StreamPaths:
    """The folders stream apps may use, and the check every path option goes through."""

    data: Path
    roots: Sequence[Path]
    home: Path

    @classmethod
    def of(cls, settings: Settings) -> StreamPaths:
        return cls(settings.stream_data, settings.stream_roots, settings.home)

    def allowed(self) -> str:
        """The folders, as a sentence for error messages and ``stream validate``."""
        roots = "".join(f", {r}" for r in self.roots)
        return (
            f"{self.data} (CONVEYOR_STREAM_DATA, where relative paths go){roots}"
            f"{' (CONVEYOR_STREAM_ROOTS)' if self.roots else ''}"
        )

    def confine(self, text: str, option: str) -> Path:
        """The absolute, symlink-free path ``text`` names, or PathNotAllowed saying why."""
        given = Path(text).expanduser()
        target = (given if given.is_absolute() else self.data / given).resolve()
        home = self.home.expanduser().resolve()
        if target == home or target.is_relative_to(home):
            raise PathNotAllowed(
                f"--{option}={text}: {target} is inside CONVEYOR_HOME ({home}), which holds the "
                "platform's token and registry; stream apps never read or write there"
            )
        for root in (self.data, *self.roots):
            if target.is_relative_to(root.expanduser().resolve()):
                return target
        raise PathNotAllowed(
            f"--{option}={text}: {target} is outside the folders stream apps may use: "
            f"{self.allowed()}. Use a path there, or ask the operator to add a folder to "
            f"CONVEYOR_STREAM_ROOTS (separated by {os.pathsep!r})"
        )

    def sqlite_url(self, url: str, option: str) -> str:
        """``url`` with a SQLite file confined like any path; other databases unchanged."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
            return url  # a database server: reached over the network, not a file of ours
        location, question, query = rest.partition("?")
        if "uri=true" in query.lower().replace(" ", ""):
            raise PathNotAllowed(f"--{option}={url}: SQLite URI filenames (uri=true) are refused")
        if location in ("", "/", "/:memory:"):
            return url  # an in-memory database
        if not location.startswith("/"):
            raise PathNotAllowed(
                f"--{option}={url}: a SQLite URL has no host; write sqlite:///relative.db "
                "(in the data folder) or sqlite:////absolute/path.db"
            )
        target = self.confine(location[1:], option)
        return f"{scheme}:///{target}{question}{query}"
