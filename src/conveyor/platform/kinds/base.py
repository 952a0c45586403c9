"""The app-kind protocol and its registry: one strategy object per kind of app.

A kind says how an app of its sort is staged (or not), what an instance
runs, from which folder and with which extra variables, and which health
check applies when the manifest gives none. The controller asks the kind and
never branches on its name, so a new kind is one module that calls
:func:`register_kind` (the stream deployer registers its own kind so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conveyor.platform.droplets import Droplets
    from conveyor.platform.spec import AppSpec, HealthCheckSpec
    from conveyor.repro.lookup import RunModel

__all__ = ["AppKind", "Files", "Launch", "Staging", "kind_named", "kind_names", "register_kind"]

#: Uploaded files: relative path -> {"digest", "mode"} (blobs in the artifact store).
Files = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Launch:
    """What an instance runs: its command line, its folder, the variables it adds,
    and what an isolated instance may see of the platform's files."""

    command: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: Bound back read-only into the instance's sandbox: its venv, its source, a model file.
    read_only: tuple[Path, ...] = ()
    #: Bound back writable: a binder's log folder, the stream data folder.
    read_write: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Staging:
    """What a kind needs to build a droplet: the builder and how to report."""

    droplets: Droplets
    progress: Callable[[str], None]
    #: Hears the lock digest, whether it was cached and how long staging took.
    on_staged: Callable[..., None]
    #: Rebuild the environment even when one for the same lock exists (restage).
    refresh: bool = False
    #: Exports a ``run:<id>/<name>`` or ``models:/`` model for an instance to read, verified
    #: (None: not on this platform).
    run_model: Callable[[str], RunModel] | None = None


class AppKind(Protocol):
    """One kind of app (model, command, stream app, ...): how it is staged and run."""

    #: The name a spec's ``kind`` gives.
    name: str
    #: Whether a client may push it (a stream app is made by the stream deployer only).
    pushable: bool
    #: Whether values set with set-env outlive a push (as in Cloud Foundry).
    keeps_set_env: bool

    def check(self, spec: AppSpec, files: Files | None) -> None:
        """Refuse (UsageError) a spec of this kind that cannot work, before anything runs."""
        ...

    async def stage(
        self, spec: AppSpec, files: Files | None, staging: Staging
    ) -> dict[str, Any] | None:
        """Build the droplet for ``files`` (None when the kind needs none)."""
        ...

    def launch(self, spec: AppSpec, droplet: Mapping[str, Any], platform_dir: Path) -> Launch:
        """The command an instance runs, its folder and the variables it adds."""
        ...

    def health_check(self, spec: AppSpec) -> HealthCheckSpec:
        """The spec's health check, or this kind's default when the spec gives none."""
        ...


_KINDS: dict[str, AppKind] = {}


def register_kind(kind: AppKind) -> None:
    """Make ``kind`` known to specs, the control API and the controller (idempotent)."""
    _KINDS[kind.name] = kind


def kind_named(name: str) -> AppKind:
    """The kind called ``name``; ValueError naming the known ones if there is none."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown app kind {name!r}; use {' or '.join(kind_names())}") from None


def kind_names() -> list[str]:
    """The names of every registered kind, sorted."""
    return sorted(_KINDS)
