"""``conveyor artifacts ls | get | put | verify | gc``: the content-addressed artifact store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from conveyor.store.blobs import BlobStore
    from conveyor.store.records import ArtifactUse


def _store() -> BlobStore:
    from conveyor.config import get_settings
    from conveyor.store.artifacts import ArtifactStore

    return ArtifactStore.from_settings(get_settings())


@click.group("artifacts")
def artifacts_group() -> None:
    """Inspect and clean the artifact store (blobs named by their digest)."""


@artifacts_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def ls_command(as_json: bool) -> None:
    """List every stored artifact: digest, size, when stored."""
    import json
    from datetime import datetime

    count = total = 0
    for info in _store().list():
        count += 1
        total += info.size
        if as_json:
            click.echo(
                json.dumps({"digest": info.digest, "size": info.size, "created": info.created})
            )
        else:
            when = datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{info.digest}  {info.size:>12}  {when}")
    if not as_json:
        click.echo(f"{count} artifacts, {total / 1e6:.1f} MB", err=True)


@artifacts_group.command("get")
@click.argument("digest")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def get_command(digest: str, output: Path | None) -> None:
    """Write the artifact DIGEST (verified) to a file or standard output."""
    from conveyor.store.artifacts import parse_digest

    store = _store()
    checked = parse_digest(digest)
    if output is not None:
        store.export(checked, output)
        click.echo(f"Wrote {output} ({store.info(checked).size} bytes).", err=True)
        return
    with store.open(checked) as reader:
        while chunk := reader.read(1 << 20):
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@artifacts_group.command("put")
@click.argument("file", type=click.Path(path_type=Path))
def put_command(file: Path) -> None:
    """Store FILE and print its digest (an intact copy already stored is not written again)."""
    click.echo(_store().put_file(file))


@artifacts_group.command("verify")
@click.option(
    "--repair",
    is_flag=True,
    help="Store damaged artifacts again from the files they came from, where those still match.",
)
def verify_command(repair: bool) -> None:
    """Check every artifact against its digest; name the damaged ones and the runs that need them.

    Exits with status 1 while any damage remains.
    """
    from conveyor.config import get_settings
    from conveyor.errors import IntegrityError, StoreError
    from conveyor.repro.references import uses_of
    from conveyor.store.registry import Registry

    store = _store()
    damaged: dict[str, str] = {}
    checked = total = 0
    for info in store.list():
        checked += 1
        total += info.size
        try:
            store.verify(info.digest)
        except IntegrityError:
            damaged[info.digest] = "its bytes no longer match its digest"
        except StoreError as exc:
            damaged[info.digest] = exc.message
    uses: dict[str, list[ArtifactUse]] = {}
    if damaged:
        with Registry.from_settings(get_settings()) as registry:
            uses = uses_of(registry, store, damaged)
    repaired = 0
    for digest, why in damaged.items():
        needed = uses.get(digest, [])
        click.echo(f"DAMAGED  {digest}: {why}")
        click.echo(f"         {_needed_by(needed)}")
        if repair:
            source = _repair(store, digest, needed)
            if source is None:
                click.echo("         not repaired: no file it came from still has this content")
            else:
                repaired += 1
                click.echo(f"         repaired from {source}")
    click.echo(
        f"Checked {checked} artifacts ({total / 1e6:.1f} MB): {len(damaged)} damaged"
        + (f", {repaired} repaired." if repair else ".")
    )
    left = len(damaged) - repaired
    if left:
        first = "Store" if repair else "Run `conveyor artifacts verify --repair`, or store"
        raise IntegrityError(
            f"{left} damaged artifact(s) remain",
            hint=f"{first} the original content again with `conveyor artifacts put FILE`, "
            "or restore the artifact store from a backup.",
        )


def _needed_by(needed: list[ArtifactUse]) -> str:
    if not needed:
        return "needed by no run (`conveyor artifacts gc` would remove it)"
    runs = sorted({u.run_id[:12] for u in needed})
    roles = sorted({u.role for u in needed})
    shown = ", ".join(runs[:10]) + (f" and {len(runs) - 10} more" if len(runs) > 10 else "")
    return f"needed by {len(runs)} run(s) as {'/'.join(roles)}: {shown}"


def _repair(store: BlobStore, digest: str, needed: list[ArtifactUse]) -> str | None:
    """Store ``digest`` again from the first file it came from that still has its content."""
    from conveyor.errors import ConveyorError
    from conveyor.store.artifacts import digest_file

    for source in dict.fromkeys(u.path for u in needed if u.path):
        try:
            if digest_file(Path(source)) != digest:
                continue
            store.put_file(Path(source))
            store.verify(digest)
        except ConveyorError:
            continue  # gone, unreadable, changed meanwhile: try the next one
        return source
    return None


@artifacts_group.command("gc")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--force", is_flag=True, help="Collect even while runs are recording.")
def gc_command(dry_run: bool, force: bool) -> None:
    """Remove artifacts that no recorded run refers to, and purge deleted runs for good."""
    from conveyor.cli.output import status_label
    from conveyor.config import get_settings
    from conveyor.errors import UsageError
    from conveyor.repro.references import live_digests
    from conveyor.store.records import RunStatus
    from conveyor.store.registry import Registry

    store = _store()
    with Registry.from_settings(get_settings()) as registry:
        running = [
            r
            for r in registry.list_runs(limit=1000, status=RunStatus.RUNNING)
            if status_label(r) == "RUNNING"
        ]
        if running and not force and not dry_run:
            ids = ", ".join(r.id[:12] for r in running[:5])
            raise UsageError(
                f"{len(running)} run(s) are still recording ({ids}); artifacts they stored "
                "but have not recorded yet would be removed",
                hint="Wait for them to finish, or pass --force.",
            )
        keep = live_digests(registry, store)  # deleted runs keep nothing alive
        report = store.gc(keep, dry_run=dry_run)
        # Only now are deleted runs gone for good: until here `runs restore` brings one back.
        purged = 0 if dry_run else registry.purge_deleted()
    verb = "Would remove" if dry_run else "Removed"
    click.echo(
        f"{verb} {report.removed} artifacts ({report.bytes_freed / 1e6:.1f} MB); "
        f"kept {report.kept}." + (f" Purged {purged} deleted run(s)." if purged else "")
    )
