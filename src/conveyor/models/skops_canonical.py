"""Make a skops file byte-for-byte reproducible.

skops names the arrays inside its zip after ``id()`` of the objects, stamps
every entry with the current time and records ``id()`` values in its schema,
so saving the same model twice gives two different files. Reproducible runs
need the same model to give the same digest: this rewrites the archive with
ids numbered in schema order, array files named after those numbers, fixed
timestamps and a fixed entry order. Loading is unaffected.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["canonicalize"]

_EPOCH = (1980, 1, 1, 0, 0, 0)
_SCHEMA = "schema.json"


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str], names: set[str]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "__id__" and isinstance(value, int):
                out[key] = ids.setdefault(value, len(ids) + 1)
            elif key == "file" and isinstance(value, str) and value in names:
                if value not in files:
                    suffix = os.path.splitext(value)[1]
                    files[value] = f"{len(files) + 1}{suffix}"
                out[key] = files[value]
            else:
                out[key] = _renumber(value, ids, files, names)
        return out
    if isinstance(node, list):
        return [_renumber(v, ids, files, names) for v in node]
    return node


def canonicalize(path: Path) -> None:
    """Rewrite the skops archive at ``path`` in canonical form (atomically)."""
    with zipfile.ZipFile(path) as src:
        names = set(src.namelist())
        schema = json.loads(src.read(_SCHEMA))
        files: dict[str, str] = {}
        canonical = _renumber(schema, {}, files, names - {_SCHEMA})
        payloads = {new: src.read(old) for old, new in files.items()}
        # Entries the schema does not name are kept under their own names.
        for other in sorted(names - {_SCHEMA} - set(files)):
            payloads[other] = src.read(other)
    tmp = path.with_name(f".{path.name}.canonical")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(payloads):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, payloads[name])
        info = zipfile.ZipInfo(_SCHEMA, date_time=_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        dst.writestr(info, json.dumps(canonical, indent=2).encode())
    tmp.replace(path)
