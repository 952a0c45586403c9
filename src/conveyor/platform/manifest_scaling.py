"""The manifest's ``autoscaling:`` block, read node by node so every mistake has its position.

::

    autoscaling:
      min-instances: 0            # 0: scale to zero after idle-period
      max-instances: 8
      target-ongoing-requests: 4
      rules:
        - {metric: cpu, threshold: 70, operator: ">", adjustment: "+1", breach-duration: 30s}
      cool-down: 60s
      idle-period: 5m

The values are checked by :mod:`.policy` (the API checks them the same way);
here its complaints are pinned to the line and column they concern, and a
contradiction (``min-instances`` above ``max-instances``) to the first of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from conveyor.platform.nodes import At, NodeReader
from conveyor.platform.policy import (
    METRICS,
    OPERATORS,
    AutoscalingSpec,
    ScalingRule,
    parse_adjustment,
    parse_seconds,
    parse_threshold,
)

__all__ = ["read_autoscaling"]

_KEYS = (
    "min-instances", "max-instances", "target-ongoing-requests", "rules", "cool-down",
    "breach-duration", "idle-period",
)  # fmt: skip
_RULE_KEYS = ("metric", "threshold", "operator", "adjustment", "breach-duration")
_T = TypeVar("_T")


def read_autoscaling(reader: NodeReader, at: At) -> AutoscalingSpec:
    """The policy of an ``autoscaling:`` block; every error is recorded on ``reader``."""
    keys = reader.mapping(at, _KEYS)
    given: dict[str, Any] = {}
    for key in ("min-instances", "max-instances"):
        if key in keys:
            given[key.replace("-", "_")] = reader.attempt(None, _count, reader, keys[key])
    if "target-ongoing-requests" in keys:
        node = keys["target-ongoing-requests"]
        given["target_ongoing_requests"] = reader.attempt(None, _positive, reader, node)
    for key in ("cool-down", "breach-duration", "idle-period"):
        if key in keys:
            given[key.replace("-", "_")] = reader.attempt(None, _duration, reader, keys[key])
    if "rules" in keys:
        items = reader.sequence(keys["rules"], "a list of rules")
        rules = [reader.attempt(None, _rule, reader, item) for item in items]
        given["rules"] = tuple(rule for rule in rules if rule is not None)
    if None in given.values():
        reader.skip()  # each bad value is already reported
    low, high = given.get("min_instances", 1), given.get("max_instances")
    if high is None:
        given["max_instances"] = high = max(low, 1)
    if low > high:
        where = keys.get("min-instances") or at
        reader.fail(where, f"{low} is more than max-instances {high}")
    return _checked(reader, at, lambda: AutoscalingSpec(**given))


def _rule(reader: NodeReader, at: At) -> ScalingRule:
    keys = reader.mapping(at, _RULE_KEYS)
    for needed in ("metric", "threshold"):
        if needed not in keys:
            reader.fail(at, f"missing '{needed}'")
    metric = reader.text(keys["metric"], "a metric")
    if metric not in METRICS:
        reader.fail(keys["metric"], f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    threshold = reader.scalar(keys["threshold"], "a threshold")
    value = _checked(reader, keys["threshold"], lambda: parse_threshold(metric, threshold))  # type: ignore[arg-type]
    fields: dict[str, Any] = {"metric": metric, "threshold": value}
    if "operator" in keys:
        operator = reader.text(keys["operator"], "an operator")
        if operator not in OPERATORS:
            reader.fail(keys["operator"], f"expected one of {', '.join(OPERATORS)}")
        fields["operator"] = operator
    if "adjustment" in keys:
        text = str(reader.scalar(keys["adjustment"], "an adjustment like +1"))
        _checked(reader, keys["adjustment"], lambda: parse_adjustment(text))
        fields["adjustment"] = text
    if "breach-duration" in keys:
        fields["breach_duration"] = _duration(reader, keys["breach-duration"])
    return _checked(reader, at, lambda: ScalingRule(**fields))


def _count(reader: NodeReader, at: At) -> int:
    count = int(reader.number(at, whole=True))
    if count > 64:
        reader.fail(at, f"expected 0 to 64 instances, got {count}")
    return count


def _positive(reader: NodeReader, at: At) -> float:
    return float(reader.number(at, whole=False))


def _duration(reader: NodeReader, at: At) -> float:
    value = reader.scalar(at, "a duration like 30s")
    if not isinstance(value, int | float | str):
        reader.fail(at, f"expected a duration like 30s, got {reader.got(at)}")
    return _checked(reader, at, lambda: parse_seconds(value, "", zero=True))


def _checked(reader: NodeReader, at: At, make: Callable[[], _T]) -> _T:
    """``make()``, its ValueError recorded at ``at`` (without the field name it starts with)."""
    try:
        return make()
    except ValueError as error:
        message = str(error)
        head, sep, rest = message.partition(": ")
        reader.fail(at, rest if sep and " " not in head else message)
