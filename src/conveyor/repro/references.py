"""Which artifacts are still referenced by recorded runs (what ``artifacts gc`` keeps)."""

from __future__ import annotations

from conveyor.errors import ConveyorError
from conveyor.repro.snapshot import read_manifest
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry

__all__ = ["live_digests"]


def live_digests(registry: Registry, store: ArtifactStore) -> set[str]:
    """Every digest a run points at, including the files inside its code snapshot."""
    live = registry.referenced_digests()
    for digest in list(live):
        if not store.exists(digest):
            continue
        try:
            files = read_manifest(store, digest)
        except ConveyorError:
            continue  # not a snapshot manifest
        live.update(f["digest"] for f in files)
    return live
