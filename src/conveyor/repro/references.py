"""Which artifacts recorded runs still need (what ``artifacts gc`` keeps, ``verify`` reports)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.repro.snapshot import read_manifest
from conveyor.store.blobs import BlobStore
from conveyor.store.records import ArtifactUse
from conveyor.store.registry import Registry

__all__ = ["live_digests", "uses_of"]


def live_digests(registry: Registry, store: BlobStore) -> set[str]:
    """Every digest a run points at, including the files inside its code snapshot.

    Only the manifests the registry names as code snapshots are read; every
    other blob stays unread, so memory follows the number of references,
    never the size of an artifact.
    """
    live = registry.referenced_digests()
    for snapshot in registry.snapshot_digests():
        live.update(entry["digest"] for entry in _snapshot_files(store, snapshot))
    return live


def uses_of(
    registry: Registry, store: BlobStore, digests: Collection[str]
) -> dict[str, list[ArtifactUse]]:
    """For each of ``digests``, the runs that need it and where its content came from.

    A file inside a code snapshot is needed by every run of that snapshot
    (role "code"); its source is the file in the run's folder, if it is still there.
    """
    wanted = set(digests)
    found: dict[str, list[ArtifactUse]] = defaultdict(list)
    snapshots: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for use in registry.artifact_uses():
        if use.digest in wanted:
            found[use.digest].append(use)
        if use.role == "snapshot":
            snapshots[use.digest, use.path].append(use.run_id)
    for (snapshot, root), run_ids in snapshots.items():
        for entry in _snapshot_files(store, snapshot):
            if entry["digest"] in wanted:
                source = None if root is None else str(Path(root, entry["path"]))
                found[entry["digest"]].extend(
                    ArtifactUse(run_id, entry["digest"], "code", source) for run_id in run_ids
                )
    return dict(found)


def _snapshot_files(store: BlobStore, digest: str) -> list[dict[str, Any]]:
    """The blob entries of a snapshot manifest; none if it is missing or damaged."""
    if not store.exists(digest):
        return []
    try:
        files = read_manifest(store, digest)
    except ConveyorError:
        return []  # damaged, or not a manifest: `conveyor artifacts verify` reports it
    # Entries without a blob (a symlink, say) have nothing in the store to keep.
    return [entry for entry in files if "digest" in entry]
