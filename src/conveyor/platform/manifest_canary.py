"""The manifest's ``canary:`` block: how a push onto a running revision becomes a canary.

::

    applications:
      - name: diagnosis
        model: models:/diagnosis@champion
        canary:
          weight: 10            # percent of requests to the new revision
          promote-after: 5m     # promoted after 5 minutes without a breach (else by hand)
          max-error-rate: 5     # rolled back at 5 points more errors (%) than the current one
          max-p95-ratio: 2      # ... or a p95 latency twice the current one's
          window: 10s           # judged window by window
          min-requests: 20      # a window where it served fewer joins the next one
          rollback: true

Every mistake is reported with its file:line:column, as the rest of the manifest's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from conveyor.platform.spec import CanaryPolicy

if TYPE_CHECKING:
    from conveyor.platform.nodes import At, NodeReader

__all__ = ["CANARY_KEYS", "read_canary", "seconds"]

CANARY_KEYS = (
    "weight", "promote-after", "max-error-rate", "max-p95-ratio", "window", "min-requests",
    "rollback",
)  # fmt: skip
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def read_canary(reader: NodeReader, at: At) -> CanaryPolicy:
    """The policy a ``canary:`` mapping gives (defaults for what it leaves out)."""
    keys = reader.mapping(at, CANARY_KEYS)
    given: dict[str, object] = {}
    for key, low, high, whole in (
        ("weight", 1, 99, True),
        ("max-error-rate", 0, 100, False),
        ("max-p95-ratio", 1, 1000, False),
        ("min-requests", 1, 1_000_000, True),
    ):
        if key in keys:
            given[key.replace("-", "_")] = _number(reader, keys[key], low, high, whole=whole)
    for key in ("promote-after", "window"):
        if key in keys:
            given[key.replace("-", "_")] = _seconds(reader, keys[key])
    if "rollback" in keys:
        given["rollback"] = reader.flag(keys["rollback"])
    return CanaryPolicy(**given)  # type: ignore[arg-type]


def _number(reader: NodeReader, at: At, low: float, high: float, *, whole: bool) -> float:
    kind = "a whole number" if whole else "a number"
    value = reader.scalar(at, kind)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (whole and not isinstance(value, int))
        or not low <= value <= high
    ):
        reader.fail(at, f"expected {kind} from {low:g} to {high:g}, got {reader.got(at)}")
    return value


def _seconds(reader: NodeReader, at: At) -> float:
    """Seconds, written as a number or with a unit: ``90``, ``90s``, ``5m``, ``1h``, ``500ms``."""
    value = reader.scalar(at, "a duration like 30s or 5m")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e9:
        return float(value)
    found = seconds(value) if isinstance(value, str) else None
    if found is None:
        reader.fail(at, f"expected a duration like 30s, 5m or 1h, got {reader.got(at)}")
    return found


def seconds(text: str) -> float | None:
    """``30s``, ``5m``, ``1h``, ``500ms`` in seconds; None for anything else (or zero).

    >>> seconds("5m"), seconds("500ms"), seconds("5 parsecs")
    (300.0, 0.5, None)
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        return None
    return float(match[1]) * _UNIT[match[2]]
