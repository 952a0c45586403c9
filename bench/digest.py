"""Digest throughput: Conveyor's artifact digest against md5 (DVC), sha256 and a plain read.

Two data sets, generated in a temporary directory and deleted afterwards: one
large file (1 GiB by default) and many small files (20,000 x 4 KiB). Every
method reads the same bytes with the same I/O code, so the table isolates the
cost of hashing; Conveyor's rows call the real ``digest_file`` and
``ArtifactStore.put_file`` (into a fresh store each repetition, once more into
the store that now holds the content, and into a fresh store with fsync on, for
the first ``--fsync-files`` files only).

    .venv/bin/python -m bench.digest                         # full size
    .venv/bin/python -m bench.digest --big 64M --small-count 2000 --repeat 1   # CI size

``--cache cold`` drops each file from the page cache before every pass
(posix_fadvise), so reads come from the disk; ``--cache both`` runs both.
Goals (issue 2): at least 2x md5 and within 1.5x of the plain read.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _runs
from conveyor.store.artifacts import ArtifactStore, digest_file
from conveyor.store.digests import open_regular, read_fd

_CHUNK = 1 << 20
_MB = 1e6

Sink = Callable[[Any], object]


@dataclass(frozen=True)
class Row:
    """One measured method on one data set."""

    dataset: str
    method: str
    seconds: float
    nbytes: int

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / _MB


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# -- data ------------------------------------------------------------------------


def make_big(path: Path, size: int) -> None:
    """A file of ``size`` bytes that no two blocks of which are equal (no compression tricks)."""
    block = os.urandom(_CHUNK)
    with path.open("wb") as f:
        written = 0
        i = 0
        while written < size:
            chunk = (block[i % _CHUNK :] + block[: i % _CHUNK])[: size - written]
            f.write(chunk)
            written += len(chunk)
            i += 7919
    os.sync()


def make_small(directory: Path, count: int, size: int) -> list[Path]:
    directory.mkdir()
    paths = []
    for i in range(count):
        path = directory / f"f{i:06d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    os.sync()
    return paths


def evict(paths: Sequence[Path]) -> None:
    """Drop the files' pages from the page cache so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# -- methods -----------------------------------------------------------------------


def stream(path: Path, sink: Sink | None) -> None:
    """Read a file in 1 MiB pieces into one reused buffer, handing each piece to ``sink``."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(view):
            if sink is not None:
                sink(view[:n])


def read_whole(path: Path) -> bytes:
    """Read a small file the way Conveyor does (open, fstat, one read, close)."""
    fd, size = open_regular(path)
    try:
        return read_fd(fd, size)
    finally:
        os.close(fd)


def plain_read(paths: Sequence[Path], big: bool) -> None:
    for path in paths:
        if big:
            stream(path, None)
        else:
            read_whole(path)


def hashlib_digest(name: str) -> Callable[[Sequence[Path], bool], None]:
    def run(paths: Sequence[Path], big: bool) -> None:
        for path in paths:
            h = hashlib.new(name)
            if big:
                stream(path, h.update)
            else:
                h.update(read_whole(path))
            h.hexdigest()

    return run


def conveyor_digest(paths: Sequence[Path], big: bool) -> None:
    for path in paths:
        digest_file(path)


def measure(
    dataset: str,
    paths: Sequence[Path],
    big: bool,
    repeat: int,
    cold: bool,
    scratch: Path,
    fsync_files: int,
) -> list[Row]:
    """Time every method ``repeat`` times, interleaved round by round so that load from
    other processes on a shared machine spreads over all methods alike; keep the median."""
    nbytes = sum(p.stat().st_size for p in paths)
    stores: list[ArtifactStore] = []

    def put_new(paths: Sequence[Path], big: bool) -> None:
        stores.append(ArtifactStore(scratch / f"store-{len(stores)}"))
        for path in paths:
            stores[-1].put_file(path)

    def put_stored(paths: Sequence[Path], big: bool) -> None:
        for path in paths:
            stores[-1].put_file(path)

    def put_new_fsync(paths: Sequence[Path], big: bool) -> None:
        store = ArtifactStore(scratch / f"store-{len(stores)}-fsync", fsync=True)
        for path in paths[:fsync_files]:
            store.put_file(path)
        shutil.rmtree(store.root)

    methods: dict[str, Callable[[Sequence[Path], bool], None]] = {
        "plain read": plain_read,
        "md5 (DVC)": hashlib_digest("md5"),
        "sha256": hashlib_digest("sha256"),
        "conveyor digest_file": conveyor_digest,
        "conveyor put_file (new)": put_new,
        "conveyor put_file (stored)": put_stored,
        "conveyor put_file (new, fsync)": put_new_fsync,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, method in methods.items():
            if cold:
                evict(paths)
            start = time.perf_counter()
            method(paths, big)
            times[name].append(time.perf_counter() - start)
        shutil.rmtree(stores[-1].root)
    fsync_bytes = sum(p.stat().st_size for p in paths[:fsync_files])
    return [
        Row(
            dataset,
            name,
            statistics.median(t),
            fsync_bytes if method is put_new_fsync else nbytes,
        )
        for (name, t), method in zip(times.items(), methods.values(), strict=True)
    ]


# -- report ---------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: MB/s, speed relative to md5, slowdown relative to a plain read."""
    lines = [
        "| data | method | MB/s | x md5 (higher is better) | x slower than read |",
        "|---|---|---:|---:|---:|",
    ]
    by_set: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_set.setdefault(row.dataset, {})[row.method] = row
    for dataset, methods in by_set.items():
        md5 = methods["md5 (DVC)"].mbps
        read = methods["plain read"].mbps
        for row in methods.values():
            lines.append(
                f"| {dataset} | {row.method} | {row.mbps:,.{0 if row.mbps >= 10 else 2}f} | "
                f"{row.mbps / md5:.2f} | {read / row.mbps:.2f} |"
            )
    return "\n".join(lines)


def machine() -> str:
    import ssl

    import blake3

    return f"{_runs.machine()}, blake3 {blake3.__version__}, {ssl.OPENSSL_VERSION}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.digest", description="Digest throughput benchmark."
    )
    parser.add_argument("--big", default="1G", help="size of the large file (default 1G)")
    parser.add_argument("--small-count", type=int, default=20_000, help="number of small files")
    parser.add_argument("--small-size", default="4K", help="size of each small file (default 4K)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per method; median kept")
    parser.add_argument(
        "--fsync-files", type=int, default=2000, help="files stored in the fsync row (a sample)"
    )
    parser.add_argument("--cache", choices=["warm", "cold", "both"], default="warm")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where to generate the data")
    args = parser.parse_args(argv)
    big_size = parse_size(args.big)
    small_size = parse_size(args.small_size)
    modes = ["warm", "cold"] if args.cache == "both" else [args.cache]

    print(f"machine: {machine()}", flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-digest-", dir=args.tmpdir) as tmp:
        scratch = Path(tmp)
        big = scratch / "big.bin"
        print(
            f"generating {big_size / (1 << 20):,.0f} MiB file and "
            f"{args.small_count:,} x {small_size:,} B files in {scratch}",
            flush=True,
        )
        make_big(big, big_size)
        small = make_small(scratch / "small", args.small_count, small_size)
        big_label = f"{big_size / (1 << 20):,.0f} MiB file"
        small_label = f"{args.small_count:,} x {small_size // 1024} KiB files"
        for mode in modes:
            cold = mode == "cold"
            if not cold:  # warm the page cache once
                plain_read([big], True)
                plain_read(small, False)
            rows += measure(
                f"{big_label}, {mode}", [big], True, args.repeat, cold, scratch, args.fsync_files
            )
            rows += measure(
                f"{small_label}, {mode}", small, False, args.repeat, cold, scratch, args.fsync_files
            )
            print(f"{mode} cache done", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
