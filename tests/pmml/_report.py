"""Rewrites one generated section of docs/pmml-conformance.md, leaving the rest as written.

The conformance and differential suites each own a section between
``<!-- begin NAME -->`` and ``<!-- end NAME -->``; they rewrite it only when
CONVEYOR_PMML_REPORT=1, so an ordinary test run leaves the working tree clean.
"""

from __future__ import annotations

import os
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "docs" / "pmml-conformance.md"


def wanted() -> bool:
    return os.environ.get("CONVEYOR_PMML_REPORT") == "1"


def write_section(name: str, body: str, path: Path = REPORT) -> None:
    """Replace the section NAME's body (appending the section when the file lacks it)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text() if path.exists() else "# PMML conformance\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
