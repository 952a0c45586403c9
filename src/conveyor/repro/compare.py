"""Differences between runs, and output-by-output verification of a reproduction.

``diff_runs(a, b, store)`` returns only what differs, grouped into sections.
``compare_outputs(original, reproduction, store)`` says for each output of
the original whether the reproduction's is identical, different (and where,
for text, CSV and JSON) or missing; ``judge_outputs(original, reproduction)``
says the same by digest alone, reading no file (the dashboard's verdicts).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.repro.snapshot import read_links, read_manifest
from conveyor.store.blobs import BlobStore
from conveyor.store.records import RunRecord

__all__ = [
    "OutputComparison",
    "Section",
    "compare_outputs",
    "diff_runs",
    "explain_difference",
    "judge_outputs",
]

_TEXT_LIMIT = 20 * 1024 * 1024


@dataclass
class Section:
    """One area of a diff: rows of (what, value in a, value in b)."""

    title: str
    rows: list[tuple[str, Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class OutputComparison:
    path: str
    status: str  # "identical" | "different" | "missing"
    original: str
    reproduced: str | None
    detail: str | None = None


def _changed(title: str, a: dict[str, Any], b: dict[str, Any]) -> Section:
    section = Section(title)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            section.rows.append((key, a.get(key), b.get(key)))
    return section


def _params(run: RunRecord) -> dict[str, Any]:
    """The run's params, a given-but-never-read one marked as unused."""
    unused = set(run.environment.get("checks", {}).get("unused_params", []))
    return {k: f"{json.dumps(v)} (unused)" if k in unused else v for k, v in run.params.items()}


def _packages(store: BlobStore, run: RunRecord) -> dict[str, str]:
    digest = run.environment.get("packages")
    if not digest:
        return {}
    try:
        listing = store.read_json(digest)
    except ConveyorError:
        return {"(package list unreadable)": digest}
    return {p["name"]: p["version"] + (f" ({p['url']})" if "url" in p else "") for p in listing}


def _blas(run: RunRecord) -> Any:
    """The run's BLAS libraries in one order: they are listed in load order, which varies."""
    libraries = run.environment.get("blas")
    if not isinstance(libraries, list):
        return libraries
    return sorted(libraries, key=lambda lib: json.dumps(lib, sort_keys=True, default=str))


def _code_files(store: BlobStore, run: RunRecord) -> dict[str, str]:
    digest = run.code.get("snapshot")
    if not digest:
        return {}
    try:
        files = {f["path"]: f["digest"] for f in read_manifest(store, digest)}
        links = read_links(store, digest)
    except ConveyorError:
        return {}
    return files | {path: f"symlink to {target}" for path, target in links.items()}


def diff_runs(a: RunRecord, b: RunRecord, store: BlobStore) -> list[Section]:
    """What differs between runs ``a`` and ``b``; empty sections are left out."""
    sections = [
        _changed("Params", _params(a), _params(b)),
        _changed("Seeds", {"seed": a.seed}, {"seed": b.seed}),
        _changed("Command", {"command": " ".join(a.command)}, {"command": " ".join(b.command)}),
    ]
    code_keys = ("commit", "branch", "dirty", "snapshot")
    code = _changed(
        "Code",
        {k: a.code.get(k) for k in code_keys},
        {k: b.code.get(k) for k in code_keys},
    )
    if a.code.get("snapshot") != b.code.get("snapshot"):
        files_a, files_b = _code_files(store, a), _code_files(store, b)
        for path in sorted(set(files_a) | set(files_b)):
            if files_a.get(path) != files_b.get(path):
                code.rows.append(
                    (
                        f"file {path}",
                        "present" if path in files_a else "absent",
                        "changed"
                        if path in files_a and path in files_b
                        else ("present" if path in files_b else "absent"),
                    )
                )
    sections.append(code)
    sections.append(_changed("Packages", _packages(store, a), _packages(store, b)))
    env_keys = ("python", "implementation", "threads", "variables")
    env_a = {k: a.environment.get(k) for k in env_keys}
    env_b = {k: b.environment.get(k) for k in env_keys}
    env_a["blas"], env_b["blas"] = _blas(a), _blas(b)
    env_a["cpu"] = a.environment.get("host", {}).get("cpu", {}).get("model")
    env_b["cpu"] = b.environment.get("host", {}).get("cpu", {}).get("model")
    env_a["host"], env_b["host"] = a.host, b.host
    sections.append(_changed("Environment", env_a, env_b))
    sections.append(_changed("Metrics", a.latest_metrics(), b.latest_metrics()))
    sections.append(
        _changed(
            "Inputs", {f.path: f.digest for f in a.inputs()}, {f.path: f.digest for f in b.inputs()}
        )
    )
    sections.append(
        _changed(
            "Outputs",
            {f.path: f.digest for f in a.outputs()},
            {f.path: f.digest for f in b.outputs()},
        )
    )
    return [s for s in sections if s.rows]


def _decode(data: bytes) -> str | None:
    if len(data) > _TEXT_LIMIT or b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _json_paths(a: Any, b: Any, where: str, found: list[str]) -> None:
    if len(found) >= 5:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            _json_paths(a.get(key), b.get(key), f"{where}.{key}", found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _json_paths(x, y, f"{where}[{i}]", found)
    elif a != b:
        found.append(f"{where or '$'}: {json.dumps(a)[:60]} -> {json.dumps(b)[:60]}")


def _csv_difference(old: str, new: str) -> str | None:
    rows_a = list(csv.reader(io.StringIO(old)))
    rows_b = list(csv.reader(io.StringIO(new)))
    header = rows_a[0] if rows_a else []
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=False)):
        if ra != rb:
            cols = [
                header[j] if j < len(header) else str(j)
                for j in range(max(len(ra), len(rb)))
                if (ra[j] if j < len(ra) else None) != (rb[j] if j < len(rb) else None)
            ]
            return f"row {i + 1}, column(s) {', '.join(cols[:5])}"
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} rows became {len(rows_b)}"
    return None


def explain_difference(path: str, old: bytes, new: bytes) -> str:
    """A short human description of where two versions of a file differ."""
    text_a, text_b = _decode(old), _decode(new)
    if text_a is None or text_b is None:
        return f"binary content differs ({len(old)} bytes -> {len(new)} bytes)"
    lower = path.lower()
    if lower.endswith(".json"):
        try:
            found: list[str] = []
            _json_paths(json.loads(text_a), json.loads(text_b), "", found)
            if found:
                return "JSON differs at " + "; ".join(found)
        except ValueError:
            pass
    if lower.endswith((".csv", ".tsv")):
        where = _csv_difference(text_a, text_b)
        if where:
            return "CSV differs at " + where
    diff = list(
        difflib.unified_diff(
            text_a.splitlines(), text_b.splitlines(), "original", "reproduced", n=1, lineterm=""
        )
    )
    return "\n".join(diff[:14]) + ("\n..." if len(diff) > 14 else "")


def judge_outputs(original: RunRecord, reproduction: RunRecord) -> list[OutputComparison]:
    """Each output of ``original`` judged by digest alone: identical, different or missing."""
    new = {f.path: f for f in reproduction.outputs()}
    results = []
    for old in original.outputs():
        match = new.get(old.path)
        if match is None:
            results.append(
                OutputComparison(
                    old.path, "missing", old.digest, None, "the reproduction did not write it"
                )
            )
        else:
            status = "identical" if match.digest == old.digest else "different"
            results.append(OutputComparison(old.path, status, old.digest, match.digest))
    return results


def compare_outputs(
    original: RunRecord, reproduction: RunRecord, store: BlobStore
) -> list[OutputComparison]:
    """Each output of ``original`` judged against the reproduction's file of the same path."""
    return [
        replace(
            r,
            detail=explain_difference(
                r.path, store.read_bytes(r.original), store.read_bytes(r.reproduced)
            ),
        )
        if r.status == "different" and r.reproduced is not None
        else r
        for r in judge_outputs(original, reproduction)
    ]
