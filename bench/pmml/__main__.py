"""PMML scoring speed: Conveyor against pypmml and jpmml_evaluator, on the same documents and rows.

For a decision tree, a random forest, gradient-boosted ensembles and a
logistic regression from the conformance suite, every engine runs in a fresh
interpreter (``_engine.py``) that measures the cold start (import + load +
first prediction of one row) and rows/s on batches of 1 row and of 10,000
rows (pandas DataFrames for every engine; loops bounded in count and time).

The JVM bridges live in a side environment, never in the project's::

    .tools/bin/uv venv /tmp/pmml-bench-venv --python 3.11
    VIRTUAL_ENV=/tmp/pmml-bench-venv .tools/bin/uv pip install pypmml jpmml_evaluator jpype1 pandas
    .venv/bin/python -m bench.pmml --others-python /tmp/pmml-bench-venv/bin/python

Without ``--others-python`` only Conveyor is measured. ``--rounds N`` (default 3)
measures every engine N times, the engines taking turns within a round, and
keeps each engine's best figures (shortest cold start, highest rates): on a
shared machine a burst of other work slows one measurement, never speeds it
up, so the best of a few rounds is the least disturbed. ``--write`` replaces
the "## PMML evaluation" section of docs/benchmarks.md with the table.
Goals (issue 6): rows/s at least 10x pypmml and at least jpmml_evaluator's on
batches; cold start under 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("CONVEYOR_PMML_CONFORMANCE", "/work/shared/pmml-conformance"))
REPO = Path(__file__).resolve().parents[2]
ENGINE = Path(__file__).with_name("_engine.py")
HEADING = "## PMML evaluation"

#: label -> (suite, document, data set)
DOCUMENTS = {
    "decision tree": ("vendor/rattle", "DecisionTreeAudit", "Audit"),
    "random forest": ("sklearn", "RandomForestAuto", "Auto"),
    "gradient boosting": ("sklearn", "GradientBoostingAuto", "Auto"),
    "XGBoost (float)": ("sklearn", "XGBoostAuto", "Auto"),
    "logistic regression": ("sklearn", "LogisticRegressionIris", "Iris"),
}


def measure(python: str, engine: str, pmml: Path, csv: Path, timeout: float) -> dict[str, float]:
    cmd = [python, str(ENGINE), "--engine", engine, "--pmml", str(pmml), "--csv", str(csv)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {}
    if done.returncode != 0:
        sys.stderr.write(f"{engine} on {pmml.name} failed:\n{done.stderr[-2000:]}\n")
        return {}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def best(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The better of two measurements, figure by figure (an empty one is a failed run)."""
    if not a or not b:
        return a or b
    return {
        "cold_s": min(a["cold_s"], b["cold_s"]),
        "single_rows_s": max(a["single_rows_s"], b["single_rows_s"]),
        "batch_rows_s": max(a["batch_rows_s"], b["batch_rows_s"]),
    }


def table(results: dict[str, dict[str, dict[str, float]]], engines: list[str]) -> str:
    lines = [
        "| model | engine | cold start (s) | rows/s, batch of 1 | rows/s, batch of 10,000 |"
        " vs pypmml (10,000) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, by_engine in results.items():
        base = by_engine.get("pypmml", {}).get("batch_rows_s")
        for engine in engines:
            r = by_engine.get(engine)
            if not r:
                lines.append(f"| {label} | {engine} | failed | | | |")
                continue
            ratio = f"{r['batch_rows_s'] / base:.1f}x" if base else ""
            lines.append(
                f"| {label} | {engine} | {r['cold_s']:.2f} | {r['single_rows_s']:,.0f} | "
                f"{r['batch_rows_s']:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{HEADING}\n\n{text}\n"
    if HEADING in old:
        head, rest = old.split(HEADING, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        new = head + section + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pmml", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--others-python", help="interpreter that has pypmml and jpmml_evaluator")
    parser.add_argument("--engines", default="conveyor,pypmml,jpmml_evaluator")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per engine run")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per engine (best kept)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if not ROOT.is_dir():
        raise SystemExit(f"the conformance documents are not at {ROOT}")
    engines = [e for e in args.engines.split(",") if e == "conveyor" or args.others_python]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, (suite, doc, data) in DOCUMENTS.items():
        pmml = ROOT / suite / "pmml" / f"{doc}.pmml"
        csv = ROOT / suite / "csv" / f"{data}.csv"
        results[label] = {}
        for round_ in range(max(args.rounds, 1)):
            for engine in engines:
                python = sys.executable if engine == "conveyor" else str(args.others_python)
                got = measure(python, engine, pmml, csv, args.timeout)
                print(f"{label:20s} {engine:16s} round {round_ + 1}: {got}", flush=True)
                results[label][engine] = best(results[label].get(engine, {}), got)
    text = table(results, engines)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    note = (
        f"Measured by `python -m bench.pmml` ({cpu}, Python {platform.python_version()}), "
        f"best of {max(args.rounds, 1)} rounds per engine. "
        "Cold start = import + load + first one-row prediction in a fresh interpreter "
        "(JVM start included for the bridges). Documents from the conformance suite; "
        "DataFrame in, all outputs out, for every engine."
    )
    print("\n" + text)
    if args.write:
        write_section(note + "\n\n" + text)


if __name__ == "__main__":
    main()
