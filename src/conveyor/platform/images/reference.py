"""Image references as Docker and the OCI distribution spec write them.

``python:3.11-slim`` is ``docker.io/library/python`` at tag ``3.11-slim``;
``127.0.0.1:5000/ds/diagnosis@sha256:…`` names a host, a repository and a
digest. A first path part with a dot or a colon (or ``localhost``) is a host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from conveyor.errors import UsageError

__all__ = [
    "DOCKER_HUB",
    "BaseImage",
    "ImageRef",
    "Reference",
    "is_loopback",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
#: Where Docker Hub's registry API answers.
_HUB_API = "registry-1.docker.io"
_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: registry host, repository path, and a tag and/or digest."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host the registry API answers on (Docker Hub's differs from its name)."""
        return _HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def name(self) -> str:
        """``host/repository``."""
        return f"{self.host}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the manifests endpoint for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, *, what: str = "image reference") -> Reference:
    """Parse ``[host/]path[:tag][@digest]``; UsageError naming ``what`` and the rule it breaks."""
    rest, _, digest = text.strip().partition("@")
    if digest and not _DIGEST.match(digest):
        raise UsageError(f"the {what} {text!r} has a malformed digest (want sha256:<64 hex>)")
    host = DOCKER_HUB
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    path, _, tag = rest.partition(":")
    if ":" in tag or "/" in tag:
        raise UsageError(f"the {what} {text!r} is not [host/]repository[:tag][@digest]")
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not _PATH.match(path):
        raise UsageError(
            f"the {what} {text!r} has an invalid repository name {path!r}",
            hint="Repository names are lower-case letters, digits and . _ - separated by /.",
        )
    if tag and not _TAG.match(tag):
        raise UsageError(f"the {what} {text!r} has an invalid tag {tag!r}")
    return Reference(host=host, repository=path, tag=tag or None, digest=digest or None)


@dataclass(frozen=True)
class ImageRef:
    """A pushed image: its repository (``host/path``) and its manifest's digest."""

    #: For example ``127.0.0.1:5000/ds/diagnosis``.
    repository: str
    #: ``sha256:`` of the manifest's exact bytes.
    digest: str

    @property
    def pinned(self) -> str:
        """``repository@digest``: what a pod spec should name, immune to re-tagging."""
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class BaseImage:
    """The image an app's layers go on top of: it must carry a Python interpreter.

    ``reference`` names it as Docker would (``python:3.11-slim`` is Docker Hub's official
    image); ``python`` is the interpreter inside it that the app's environment points at.
    """

    reference: str
    python: str = "/usr/local/bin/python3"
    #: ``os/architecture`` the image is for; picks the manifest from a multi-platform index
    #: and the wheels installed.
    platform: str = "linux/amd64"

    @classmethod
    def for_python(cls, version: str, *, platform: str = "linux/amd64") -> BaseImage:
        """The official slim Python image of ``version`` (``3.11.7`` → ``python:3.11-slim``)."""
        minor = ".".join(version.split(".")[:2])
        return cls(f"python:{minor}-slim", platform=platform)


def is_loopback(host: str) -> bool:
    """Whether a registry ``host[:port]`` is on this machine (spoken to in plain HTTP)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
