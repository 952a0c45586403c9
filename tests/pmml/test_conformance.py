"""The shared PMML conformance suite: every document scored and compared with its expected CSV.

Each document is its own case. Documents Conveyor does not (yet) evaluate are
listed in KNOWN_UNSUPPORTED with the reason and run as strict xfails, so a
document that starts passing, or one outside the list that fails, is
reported. The folder is optional outside the project machine: without it the
module is skipped. The summary table is printed; it is written to
docs/pmml-conformance.md only when CONVEYOR_PMML_REPORT=1, so an ordinary
run leaves the working tree clean.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.pmml._report import wanted, write_section

ROOT = Path(os.environ.get("CONVEYOR_PMML_CONFORMANCE", "/work/shared/pmml-conformance"))
MISSING = frozenset({"N/A", "NA", ""})
F32_ULPS = 4
DATASETS = ("Audit", "Auto", "Iris", "Lung", "Shopping", "Versicolor")


@dataclass(frozen=True)
class Case:
    suite: str  # "sklearn", "rattle", "knime", "rapidminer", "sas"
    name: str
    pmml: Path
    inputs: Path | None
    expected: Path | None

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"


@dataclass
class Outcome:
    rows: int
    matched: int
    max_error: float
    first_mismatch: str = ""


def discover(root: Path = ROOT) -> list[Case]:
    cases = []
    for pmml_dir in sorted(root.glob("**/pmml")):
        suite = pmml_dir.parent.name
        csv_dir = pmml_dir.parent / "csv"
        for doc in sorted(pmml_dir.glob("*.pmml")):
            name = doc.stem
            dataset = next((d for d in DATASETS if name.endswith(d)), None)
            inputs = csv_dir / f"{dataset}.csv" if dataset else None
            expected = csv_dir / f"{name}.csv"
            cases.append(
                Case(
                    suite,
                    name,
                    doc,
                    inputs if inputs and inputs.exists() else None,
                    expected if expected.exists() else None,
                )
            )
    return cases


def tolerance(case: Case) -> tuple[float, bool]:
    """(relative tolerance, float32 equivalence) for a case, per the README."""
    if case.name.startswith("XGBoost"):
        return 1e-6, True
    if case.suite == "sas":
        return 1e-5, False
    if case.name.startswith("NeuralNetwork"):
        return 1e-6, False
    if case.name.startswith(("GBM", "GBT", "GradientBoosting", "LightGBM")):
        return 1e-7, False
    return 1e-13, False


def read_csv(path: Path) -> tuple[list[str], list[list[str | None]]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [[None if cell in MISSING else cell for cell in row] for row in reader]
    return header, rows


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _same(actual: Any, expected: str | None, rtol: float, f32: bool) -> tuple[bool, float]:
    """Whether one cell matches, and its relative error when both are numbers."""
    if isinstance(actual, float | np.floating) and math.isnan(actual):
        actual = None
    if expected is None:
        return actual is None, 0.0
    if actual is None:
        return False, math.inf
    if expected.lower() in ("true", "false") and isinstance(actual, bool | np.bool_):
        return (expected.lower() == "true") == bool(actual), 0.0
    e, a = _number(expected), _number(actual)
    if e is not None and a is not None and not isinstance(actual, str):
        if f32:
            # "32-bit float equivalence": within a few float32 ulps of the expected value
            a32, e32 = np.float32(a), np.float32(e)
            ulps = abs(float(a32) - float(e32)) / float(np.spacing(abs(e32)) or 1e-45)
            return ulps <= F32_ULPS, ulps * float(np.finfo(np.float32).eps)
        err = abs(a - e) / max(abs(e), 1.0) if abs(e) < 1.0 else abs(a - e) / abs(e)
        return abs(a - e) <= rtol * max(abs(e), 1.0), err
    if e is not None and a is not None:
        return a == e, 0.0 if a == e else math.inf
    return str(actual) == expected, 0.0


def score(case: Case) -> Outcome:
    from conveyor.models.pmml import load

    assert case.inputs is not None
    assert case.expected is not None
    model = load(case.pmml)
    in_header, in_rows = read_csv(case.inputs)
    batch = {
        name: np.array([r[j] for r in in_rows], dtype=object) for j, name in enumerate(in_header)
    }
    result = model.predict(batch)
    exp_header, exp_rows = read_csv(case.expected)
    rtol, f32 = tolerance(case)
    n = len(exp_rows)
    ok = np.ones(n, dtype=bool)
    max_error = 0.0
    first = ""
    for j, column in enumerate(exp_header):
        if column not in result:
            return Outcome(n, 0, math.inf, f"no output column {column!r} (have {sorted(result)})")
        values = result[column]
        for i in range(n):
            same, err = _same(values[i], exp_rows[i][j], rtol, f32)
            if math.isfinite(err):
                max_error = max(max_error, err)
            if not same:
                ok[i] = False
                if not first:
                    first = f"row {i} {column!r}: got {values[i]!r}, expected {exp_rows[i][j]!r}"
    return Outcome(n, int(ok.sum()), max_error, first)


if not ROOT.is_dir():
    pytest.skip(f"the PMML conformance folder {ROOT} is absent", allow_module_level=True)

#: case id -> why Conveyor does not match it. Keep this list short and honest.
_SAS_FIXUP = (
    "needs the reference's SAS fix-up (a Constant 'FMTWIDTH' used as a number), and the "
    "expected CSV has SAS-only columns (_WARN_, F_*, R_*, EM_*) the document lacks"
)
KNOWN_UNSUPPORTED: dict[str, str] = {
    "sas/LogisticRegressionAudit": _SAS_FIXUP,
    "sas/LogisticRegressionIris": (
        "the expected CSV has SAS-only columns (_WARN_, F_*, R_*, EM_*) the document lacks"
    ),
    "sas/ProbitRegressionAudit": _SAS_FIXUP,
    "rattle/LogisticRegressionAudit": (
        "R's expected probabilities are exactly 0/1 on 5 rows where the document gives 1.8e-11"
    ),
}

#: documents without an expected CSV and what is checked instead
NO_CSV = {"sklearn/ConstantPredicateTest"}

CASES = [c for c in discover() if c.id not in NO_CSV]
RESULTS: dict[str, Outcome | str] = {}


def _param(case: Case) -> object:
    marks = []
    if case.id in KNOWN_UNSUPPORTED:
        marks.append(pytest.mark.xfail(reason=KNOWN_UNSUPPORTED[case.id], strict=True))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_document_matches_expected_output(case: Case) -> None:
    assert case.inputs is not None, f"{case.id}: input CSV missing"
    assert case.expected is not None, f"{case.id}: expected CSV missing"
    try:
        outcome = score(case)
    except Exception as exc:
        RESULTS[case.id] = f"error: {str(exc).splitlines()[0][:120]}"
        raise
    RESULTS[case.id] = outcome
    assert outcome.matched == outcome.rows, f"{case.id}: {outcome.first_mismatch}"


def test_constant_predicate_document_scores_through_select_first() -> None:
    """ConstantPredicateTest has segments without models: refused with a clear error."""
    from conveyor.errors import ModelError
    from conveyor.models.pmml import load

    path = ROOT / "sklearn" / "pmml" / "ConstantPredicateTest.pmml"
    with pytest.raises(ModelError, match=r"line \d+: <Segment> contains no model"):
        load(path)


def _suite(case_id: str) -> str:
    return "sklearn" if case_id.startswith("sklearn/") else "vendor"


def _table() -> str:
    lines = ["| document | rows | matched | max error | status |", "|---|---:|---:|---:|---|"]
    passed = {"sklearn": 0, "vendor": 0}
    totals = {"sklearn": 0, "vendor": 0}
    for case in CASES:
        suite = _suite(case.id)
        totals[suite] += 1
        got = RESULTS.get(case.id)
        if isinstance(got, Outcome):
            ok = got.matched == got.rows
            passed[suite] += ok
            err = "inf" if math.isinf(got.max_error) else f"{got.max_error:.1e}"
            status = "match" if ok else KNOWN_UNSUPPORTED.get(case.id, got.first_mismatch[:80])
            lines.append(f"| {case.id} | {got.rows} | {got.matched} | {err} | {status} |")
        else:
            status = KNOWN_UNSUPPORTED.get(case.id, got or "not run")
            lines.append(f"| {case.id} | - | - | - | {status} |")
    head = [
        "Written by `CONVEYOR_PMML_REPORT=1 pytest tests/pmml/test_conformance.py` from",
        "/work/shared/pmml-conformance.",
        "",
        f"- sklearn: {passed['sklearn']}/{totals['sklearn']} documents match",
        f"- vendor: {passed['vendor']}/{totals['vendor']} documents match",
        "",
    ]
    return "\n".join(head + lines) + "\n"


def test_write_conformance_report() -> None:
    """Runs last in this module: prints the table, and writes it when CONVEYOR_PMML_REPORT=1."""
    if len(RESULTS) < len(CASES):
        pytest.skip("the report needs the whole conformance module to run")
    text = _table()
    print("\n" + text)
    if wanted():
        write_section("conformance", text)
