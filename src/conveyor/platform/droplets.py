"""Droplets on the platform: uploaded files unpacked and staged into environments.

Files are unpacked from the artifact store into a scratch folder and staged
into an environment (:meth:`Droplets.build`, :mod:`.staging`), or unpacked
once per content into ``<platform>/models/<digest>`` (:meth:`Droplets.unpack`);
each app kind (:mod:`.kinds`) picks which it needs. New environments are
byte-compiled in the background after their first deploy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from conveyor.errors import UsageError
from conveyor.store.blobs import BlobStore

if TYPE_CHECKING:
    from conveyor.platform.kinds.base import Staging

__all__ = ["Droplets", "GcReport", "check_upload_path", "files_digest"]

Progress = Callable[[str], None]


@dataclass
class GcReport:
    """What a collection removed (or would remove, on a dry run)."""

    removed: list[str] = field(default_factory=list)
    bytes: int = 0


class Droplets:
    """Builds droplets under ``platform_dir`` from blobs in ``artifacts``."""

    def __init__(self, artifacts: BlobStore, platform_dir: Path) -> None:
        self.artifacts = artifacts
        self.dir = platform_dir
        self._compiling: dict[Path, asyncio.Future[bool]] = {}

    async def unpack(self, files: Mapping[str, Mapping[str, Any]], progress: Progress) -> Path:
        """Unpack ``files`` once per content into ``models/<digest>`` (a model app's droplet)."""
        target = self.dir / "models" / files_digest(files)
        if not target.is_dir():
            progress("Unpacking the model...")
            await asyncio.to_thread(self.materialise, files, target)
        return target

    async def build(
        self,
        name: str,
        requirements: str | None,
        files: Mapping[str, Mapping[str, Any]],
        staging: Staging,
    ) -> dict[str, Any]:
        """Stage an environment from ``requirements`` plus a source snapshot of ``files``.

        ``staging.on_staged`` hears the lock digest, whether it was cached and how long it took.
        """
        from conveyor.platform.staging import stage

        started = time.monotonic()
        progress = staging.progress
        uploads = self.dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=uploads))
        try:
            await asyncio.to_thread(self.materialise, files, tmp)
            loop = asyncio.get_running_loop()

            def report(message: str) -> None:
                loop.call_soon_threadsafe(progress, message)

            droplet = await asyncio.to_thread(
                stage,
                tmp,
                _inside(tmp, requirements) if requirements else None,
                self.dir / "droplets",
                progress=report,
                refresh=staging.refresh,
                shown_as=requirements,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        seconds = time.monotonic() - started
        staging.on_staged(
            lock_digest=droplet.lock_digest,
            cached=droplet.cached,
            seconds=round(seconds, 2),
        )
        return {
            "venv": str(droplet.venv),
            "source": str(droplet.source),
            "lock_digest": droplet.lock_digest,
        }

    def compile_later(self, venv: Path) -> None:
        """Byte-compile a new environment in the background (see staging.compile_droplet)."""
        from conveyor.platform.staging import compile_droplet

        if venv in self._compiling:
            return
        task = asyncio.ensure_future(asyncio.to_thread(compile_droplet, venv))
        self._compiling[venv] = task
        task.add_done_callback(lambda _t: self._compiling.pop(venv, None))

    def materialise(self, files: Mapping[str, Mapping[str, Any]], target: Path) -> None:
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent.parent))
        try:
            for rel, entry in files.items():
                dest = partial / check_upload_path(rel)
                self.artifacts.export(str(entry["digest"]), dest)
                dest.chmod(0o755 if int(entry.get("mode", 0o644)) & 0o111 else 0o644)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def collect(self, keep: set[Path], *, dry_run: bool, min_age: float = 3600.0) -> GcReport:
        """Remove environments, sources and unpacked files no kept revision or app uses.

        ``keep`` holds every folder some revision or registered app points at.
        Anything younger than ``min_age`` seconds is left too: a staging in progress
        has made it but not yet recorded it in a revision.
        """
        now = time.time()
        report = GcReport()
        candidates = [
            *(self.dir / "droplets" / "envs").glob("*"),
            *(self.dir / "droplets" / "sources").glob("*"),
            *(self.dir / "models").glob("*"),
            *(self.dir / "stream-apps").glob("*"),
            *(self.dir / "uploads").glob("*"),
            *(self.dir / "image-layers").glob("*"),  # kept dependency layers of images
        ]
        for path in sorted(candidates):
            if not path.is_dir() or path in keep:
                continue
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < min_age:
                continue
            size = sum(
                f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()
            )
            report.removed.append(str(path))
            report.bytes += size
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
                path.with_name(path.name + ".lock").unlink(missing_ok=True)
        return report

    async def drain(self) -> None:
        """Wait for background compilations (a platform that stops waits for them)."""
        await asyncio.gather(*self._compiling.values(), return_exceptions=True)


def check_upload_path(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if (
        not rel
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
        or "\\" in rel
        or "\0" in rel
    ):
        raise UsageError(f"{rel!r} is not a relative file path inside the app's folder")
    return path


def files_digest(files: Mapping[str, Mapping[str, Any]]) -> str:

    text = json.dumps({k: v["digest"] for k, v in sorted(files.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _inside(folder: Path, relative: str) -> Path:
    """``folder/relative``; UsageError unless it stays in ``folder`` (symlinks resolved)."""
    base = folder.resolve()
    target = (base / relative).resolve()
    if PurePosixPath(relative).is_absolute() or not target.is_relative_to(base):
        raise UsageError(
            f"the requirements file {relative!r} is not inside the app's folder",
            hint="Name a file in the app's folder, for example requirements.txt.",
        )
    return target
