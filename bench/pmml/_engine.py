"""One engine, one document: cold start and rows/s, printed as one JSON line.

Run by bench/pmml/__main__.py in a fresh interpreter per measurement, so the
cold start includes importing the engine (and starting its JVM). This file
imports nothing from Conveyor's bench package, so it also runs in the side
environment that holds pypmml and jpmml_evaluator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def _loader(engine: str) -> Any:
    if engine == "conveyor":
        from conveyor.models.pmml import load

        return lambda path: load(path).predict
    if engine == "pypmml":
        from pypmml import Model  # type: ignore[import-not-found]

        return lambda path: Model.load(path).predict
    if engine == "jpmml_evaluator":
        from jpmml_evaluator import make_evaluator  # type: ignore[import-not-found]

        return lambda path: make_evaluator(path, backend="jpype").verify().evaluateAll
    raise SystemExit(f"unknown engine {engine!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--pmml", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=200, help="max single-row calls")
    parser.add_argument("--batches", type=int, default=5, help="max large-batch calls")
    parser.add_argument("--seconds", type=float, default=5.0, help="time bound per loop")
    args = parser.parse_args()

    # the data is ready before the clock starts: cold start is the engine's own cost
    import pandas as pd

    data = pd.read_csv(args.csv, na_values=["NA", "N/A"])
    one = data.iloc[:1].reset_index(drop=True)
    start = time.perf_counter()
    predict = _loader(args.engine)(args.pmml)
    predict(one)
    cold = time.perf_counter() - start

    def rate(frame: Any, limit: int) -> float:
        count, start = 0, time.perf_counter()
        while count < limit and time.perf_counter() - start < args.seconds:
            predict(frame)
            count += 1
        return count * len(frame) / (time.perf_counter() - start)

    big = pd.concat([data] * (args.rows // len(data) + 1), ignore_index=True).iloc[: args.rows]
    predict(big)  # warm-up (JIT for the JVMs)
    result = {
        "engine": args.engine,
        "cold_s": cold,
        "single_rows_s": rate(one, args.single),
        "batch_rows_s": rate(big, args.batches),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
