"""App images: Conveyor's daemonless build + push against skopeo pushing the same image.

    python -m bench.images [--rounds 3]

Packages come from the machine's uv cache (the resolution may ask the index);
the registry is Debian's docker-registry on a free loopback port (as in the tests).
A droplet of a FastAPI + scikit-learn app is staged once; a tiny base image is
pushed first. Then, each round, medians reported:

* conveyor, new lock, new registry: ``build_and_push`` of the droplet with an
  empty layer cache (install the packages for linux/amd64, write both layers;
  then HEAD the blobs, mount the base layer, upload the app's layers, PUT the
  manifest); build and push timed apart from its progress lines;
* conveyor again: the same droplet with the dependencies layer kept (only the
  source layer written; the digest is found in the registry, nothing sent);
* skopeo: ``skopeo copy oci:DIR docker://…`` of the very same image (laid out
  once with ``skopeo copy docker://… oci:DIR``) into a new registry holding only
  the base: the push alone, by the tool a user would otherwise reach for.

Each round starts fresh registries (empty storage), so nothing is mounted from
an earlier round by either tool.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.images.tiny_base import push_tiny_base
from tests.oci_registry import OciRegistry, skopeo, start

from conveyor.platform.images import build_and_push
from conveyor.platform.staging import Droplet, stage

REQUIREMENTS = "scikit-learn==1.9.1\nfastapi==0.165.0\nuvicorn==0.54.0\n"
APP = "import sklearn, fastapi\napp = fastapi.FastAPI()\n"


def timed_push(
    droplet: Droplet, repository: str, base: str, cache: Path
) -> tuple[float, float, str]:
    """(build seconds, push seconds, digest) of one build_and_push."""
    marks: list[tuple[float, str]] = []
    started = time.perf_counter()
    image = build_and_push(
        droplet,
        repository=repository,
        base=base,
        labels={},
        insecure=True,
        progress=lambda m: marks.append((time.perf_counter(), m)),
        cache=cache,
    )
    ended = time.perf_counter()
    # The build ends where the first line about the registry's contents appears.
    built = next((at for at, m in marks if not m.startswith(("Reading", "Building"))), ended)
    return built - started, ended - built, image.digest


def fresh_registry(work: Path, name: str) -> tuple[OciRegistry, str]:
    """A new registry (empty storage) holding only the tiny base; (registry, base reference)."""
    registry = start(work / name)
    push_tiny_base(registry.host, "base/tiny", "1", work / f"{name}-base")
    return registry, f"{registry.host}/base/tiny:1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {
        "conveyor build (new lock)": [],
        "conveyor push (new registry)": [],
        "conveyor again (kept layer, nothing sent)": [],
        "skopeo push (new registry)": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        work = Path(tmp)
        app = work / "app"
        app.mkdir()
        (app / "main.py").write_text(APP)
        (app / "requirements.txt").write_text(REQUIREMENTS)
        droplet = stage(app, app / "requirements.txt", work / "cache")
        layout = work / "layout"
        for round_ in range(args.rounds):
            cache = work / f"layers-{round_}"
            registry, base = fresh_registry(work, f"conveyor-{round_}")
            try:
                repository = f"{registry.host}/ds/app"
                build, push, digest = timed_push(droplet, repository, base, cache)
                again = sum(timed_push(droplet, repository, base, cache)[:2])
                if not layout.exists():
                    skopeo(
                        "copy",
                        "--src-tls-verify=false",
                        f"docker://{repository}@{digest}",
                        f"oci:{layout}",
                    )
            finally:
                registry.stop()
            rows["conveyor build (new lock)"].append(build)
            rows["conveyor push (new registry)"].append(push)
            rows["conveyor again (kept layer, nothing sent)"].append(again)
            registry, _ = fresh_registry(work, f"skopeo-{round_}")
            try:
                started = time.perf_counter()
                skopeo(
                    "copy",
                    "--dest-tls-verify=false",
                    f"oci:{layout}",
                    f"docker://{registry.host}/ds/app",
                )
                rows["skopeo push (new registry)"].append(time.perf_counter() - started)
            finally:
                registry.stop()
        sizes = sorted(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    reference = statistics.median(rows["skopeo push (new registry)"])
    print(f"{args.rounds} rounds, medians; blobs of the image (bytes): {sizes}\n")
    print("| step | median s | x skopeo push |")
    print("|---|---:|---:|")
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
