"""The platform's errors, all rooted at :class:`conveyor.errors.ConveyorError`.

ConveyorError
└── PlatformError          the supervisor or router cannot do what was asked
    ├── ClusterError       a Kubernetes cluster cannot be reached or refused an action
    ├── DeployError        a new revision's instances never became healthy; the old ones serve
    ├── ImageError         an image could not be built from a droplet or a registry refused it
    ├── IllegalTransition  an instance was asked to move between states it cannot
    ├── SpawnError         an instance's command could not be started
    ├── StagingError       an app's requirements could not be resolved or installed
    └── ManifestError      conveyor.yml is malformed (names file, line, column and field)
"""

from __future__ import annotations

from conveyor.errors import ConveyorError

__all__ = [
    "ClusterError",
    "DeployError",
    "IllegalTransition",
    "ImageError",
    "ManifestError",
    "PlatformError",
    "SpawnError",
    "StagingError",
]


class PlatformError(ConveyorError):
    """The supervisor or router cannot do what was asked."""


class ClusterError(PlatformError):
    """A Kubernetes cluster cannot be reached, or its API refused an action (verb, resource)."""


class DeployError(PlatformError):
    """New instances never became healthy; what ran before keeps running."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        reason: str = "",
        lines: list[str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        #: Why, in a few words (the deploy-failed event's reason).
        self.reason = reason
        #: The failed instances' last lines of output, oldest first.
        self.lines = list(lines or [])


class IllegalTransition(PlatformError):
    """An instance was asked to move between two states that are not connected."""


class SpawnError(PlatformError):
    """An instance's command could not be started (missing executable, bad cwd, ...)."""


class StagingError(PlatformError):
    """An app's droplet could not be built: its requirements do not resolve or install."""


class ManifestError(PlatformError):
    """A manifest cannot be used; the message starts ``file:line:column: field:``."""

    exit_code = 2


class ImageError(PlatformError):
    """An image could not be built from a droplet, or a registry refused or did not answer."""
