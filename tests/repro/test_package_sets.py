"""The package set a platform records for many steps: listed once, listed again after a change."""

from __future__ import annotations

from pathlib import Path

from conveyor.repro.environment import stored_packages
from conveyor.store.artifacts import ArtifactStore


def _install(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")


def test_a_package_set_is_stored_once_and_again_when_a_package_is_installed_or_removed(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    store = ArtifactStore(tmp_path / "artifacts")
    _install(site, "alpha", "1.0")
    digest, count = stored_packages([str(site)], store)
    assert count == 1
    assert store.read_json(digest) == [{"name": "alpha", "version": "1.0"}]
    assert stored_packages([str(site)], store) == (digest, 1)
    _install(site, "beta", "2.0")
    grown, count = stored_packages([str(site)], store)
    assert count == 2
    assert [p["name"] for p in store.read_json(grown)] == ["alpha", "beta"]
    for path in sorted((site / "beta-2.0.dist-info").iterdir()):
        path.unlink()
    (site / "beta-2.0.dist-info").rmdir()
    assert stored_packages([str(site)], store) == (digest, 1)
