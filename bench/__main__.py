"""List the benchmarks; run one with ``python -m bench.<name>`` (see docs/benchmarks.md)."""

from __future__ import annotations

import importlib
import pkgutil

import bench


def main() -> None:
    print("Benchmarks (each compares Conveyor with the tool a user would otherwise pick):\n")
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        print(f"  python -m bench.{info.name:<16} {summary}")
    print("\nResults and the commands that produced them: docs/benchmarks.md")


if __name__ == "__main__":
    main()
