"""An app's autoscaling policy: bounds, a concurrency target, rules, cool-down, idle period.

What the manifest's ``autoscaling:`` block says, in one typed shape that the
API validates, a revision stores and :mod:`.autoscaler` obeys. Values may be
given with their units as text (``"200ms"``, ``"30s"``, ``"+50%"``); they are
read into numbers once, here, so a wrong unit is refused the same way from a
manifest, the CLI or the API.

>>> rule = ScalingRule(metric="response-time-p95", threshold="200ms", adjustment="+50%")
>>> rule.threshold, rule.breach_duration, rule.describe()
(200.0, 30.0, 'response time p95 > 200 ms')
>>> AutoscalingSpec(min_instances=3, max_instances=2)
Traceback (most recent call last):
...
ValueError: min-instances 3 is more than max-instances 2
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "METRICS",
    "OPERATORS",
    "AutoscalingSpec",
    "ScalingRule",
    "adjusted",
    "parse_adjustment",
    "parse_seconds",
    "parse_threshold",
]

#: Every metric a rule can watch, with the unit its threshold is written in.
METRICS: Mapping[str, str] = {
    "cpu": "%",  # of one core, averaged over the instances
    "memory": "%",  # of the memory limit, averaged over the instances
    "throughput": "rps",  # requests per second to the whole app
    "response-time-p95": "ms",  # the router's 95th percentile over the last window
    "ongoing-requests": "",  # requests in progress, per instance
}
OPERATORS = (">", ">=", "<", "<=")
_LIMIT = 64  # MAX_INSTANCES of the spec (not imported: spec imports this module)
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(_NUMBER + r"\s*(ms|s|m|h)?")
_THRESHOLD = re.compile(_NUMBER + r"\s*(%|ms|s|rps|/s)?")
_ADJUSTMENT = re.compile(r"([+-])(\d+)(%?)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
#: The unit each written unit means, for the threshold check.
_UNIT_OF = {"%": "%", "ms": "ms", "s": "ms", "rps": "rps", "/s": "rps", None: None}
_STRICT: dict[str, Any] = {"extra": "forbid"}


def parse_seconds(value: float | str, what: str, *, zero: bool = False) -> float:
    """``30``, ``"30s"``, ``"500ms"``, ``"2m"`` → seconds; ValueError naming ``what`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration like 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{what}: expected a duration like 30s or 500ms, got {value!r}")
        seconds = float(match[1]) * _SECONDS[match[2]]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{what}: expected a duration above 0, got {value!r}")
    if seconds > 86_400:
        raise ValueError(f"{what}: at most a day (86400 s), got {value!r}")
    return seconds


def parse_threshold(metric: str, value: float | str) -> float:
    """A threshold in the unit of ``metric`` (percent, ms, requests/s or requests)."""
    unit = METRICS[metric]
    if isinstance(value, bool):
        raise ValueError(f"threshold: expected a number, got {value!r}")
    if isinstance(value, int | float):
        number, given = float(value), None
    else:
        match = _THRESHOLD.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"threshold: expected a number{_example(metric)}, got {value!r}")
        number, given = float(match[1]), match[2]
        if _UNIT_OF[given] not in (None, unit or None):
            raise ValueError(
                f"threshold: {value!r} is in the wrong unit for {metric}{_example(metric)}"
            )
        if given == "s":
            number *= 1000.0
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"threshold: expected a number ≥ 0, got {value!r}")
    if unit == "%" and number > 100 and metric == "memory":
        raise ValueError(f"threshold: memory is a percentage of the limit (0-100), got {value!r}")
    return number


def _example(metric: str) -> str:
    return {
        "%": " of percent like 70",
        "ms": " of milliseconds like 200ms",
        "rps": " of requests per second like 50",
        "": " of requests per instance like 4",
    }[METRICS[metric]]


def parse_adjustment(value: str) -> tuple[int, bool]:
    """``"+1"`` → (1, False); ``"-50%"`` → (-50, True)."""
    match = _ADJUSTMENT.fullmatch(str(value).strip())
    if match is None or int(match[2]) == 0:
        raise ValueError(f"adjustment: expected a signed change like +1, -1 or +50%, got {value!r}")
    amount = int(match[2]) * (1 if match[1] == "+" else -1)
    if match[3] and amount <= -100:
        raise ValueError(f"adjustment: cannot remove {value} of the instances; use -50% or -1")
    return amount, bool(match[3])


def adjusted(current: int, adjustment: str) -> int:
    """The instance count ``adjustment`` makes of ``current`` (a percentage rounds away from 0).

    >>> adjusted(2, "+50%"), adjusted(4, "-1"), adjusted(3, "-50%")
    (3, 3, 1)
    """
    amount, percent = parse_adjustment(adjustment)
    if not percent:
        return current + amount
    change = math.ceil(current * abs(amount) / 100) or 1
    return current + (change if amount > 0 else -change)


@dataclass(frozen=True)
class ScalingRule:
    """Scale by ``adjustment`` once ``metric operator threshold`` held for ``breach_duration``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    metric: str
    threshold: float | str
    operator: str = ">"
    adjustment: str = "+1"
    breach_duration: float | str = 30.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric: unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        if self.operator not in OPERATORS:
            raise ValueError(
                f"operator: expected one of {', '.join(OPERATORS)}, got {self.operator!r}"
            )
        parse_adjustment(self.adjustment)
        object.__setattr__(self, "threshold", parse_threshold(self.metric, self.threshold))
        duration = parse_seconds(self.breach_duration, "breach-duration")
        object.__setattr__(self, "breach_duration", duration)

    @property
    def scales_up(self) -> bool:
        return self.adjustment.strip().startswith("+")

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaches this rule."""
        limit = float(self.threshold)
        return {
            ">": value > limit,
            ">=": value >= limit,
            "<": value < limit,
            "<=": value <= limit,
        }[self.operator]

    def describe(self, value: float | None = None) -> str:
        """``response time p95 > 200 ms``, or with the measured value: ``... 340 ms > 200 ms``."""
        unit = {"%": " %", "ms": " ms", "rps": " requests/s", "": ""}[METRICS[self.metric]]
        name = self.metric.replace("-", " ")
        if self.metric == "ongoing-requests":
            name = "ongoing requests per instance"
        shown = "" if value is None else f" {_num(value)}{unit}"
        return f"{name}{shown} {self.operator} {_num(float(self.threshold))}{unit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "operator": self.operator,
            "adjustment": self.adjustment,
            "breach_duration": self.breach_duration,
        }


@dataclass(frozen=True)
class AutoscalingSpec:
    """An ``autoscaling:`` block; ``min_instances: 0`` lets the app scale to zero when idle."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    min_instances: int = 1
    max_instances: int = 1
    #: Requests in progress per instance to aim for (Ray Serve's measure); None: rules only.
    target_ongoing_requests: float | None = None
    rules: tuple[ScalingRule, ...] = ()
    #: Seconds after a scaling during which no other is made.
    cool_down: float | str = 60.0
    #: How long the target-ongoing-requests measure must ask for a change before it is made.
    breach_duration: float | str = 30.0
    #: Seconds without a request after which an app with ``min_instances: 0`` stops.
    idle_period: float | str = 300.0
    #: Messages waiting in a stream app's input per instance to aim for (KEDA's lag target).
    target_lag: int | None = None

    def __post_init__(self) -> None:
        for what, count in (("min", self.min_instances), ("max", self.max_instances)):
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _LIMIT:
                raise ValueError(f"{what}-instances: expected 0 to {_LIMIT}, got {count!r}")
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min-instances {self.min_instances} is more than "
                f"max-instances {self.max_instances}"
            )
        if self.max_instances == 0:
            raise ValueError("max-instances: must be at least 1")
        target = self.target_ongoing_requests
        if target is not None and (isinstance(target, bool) or not target > 0):
            raise ValueError(f"target-ongoing-requests: expected a number above 0, got {target!r}")
        lag = self.target_lag
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int) or lag < 1):
            raise ValueError(f"lag-target: expected a whole number above 0, got {lag!r}")
        for name in ("cool_down", "breach_duration", "idle_period"):
            value = parse_seconds(getattr(self, name), name.replace("_", "-"), zero=True)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "rules", tuple(self.rules))

    def to_json(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "target_ongoing_requests": self.target_ongoing_requests,
            "rules": [rule.to_json() for rule in self.rules],
            "cool_down": self.cool_down,
            "breach_duration": self.breach_duration,
            "idle_period": self.idle_period,
            "target_lag": self.target_lag,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AutoscalingSpec:
        rules = tuple(ScalingRule(**rule) for rule in data.get("rules") or ())
        return cls(**{**data, "rules": rules})

    def describe(self) -> str:
        """``0-8 instances; 4 ongoing requests per instance (after 30 s); cool-down 60 s ...``."""
        parts = [f"{self.min_instances}-{self.max_instances} instances"]
        after = f" (after {_num(float(self.breach_duration))} s)"
        if self.target_ongoing_requests is not None:
            ongoing = _num(self.target_ongoing_requests)
            parts.append(f"{ongoing} ongoing requests per instance{after}")
        if self.target_lag is not None:
            parts.append(f"consumer lag {self.target_lag} per instance{after}")
        parts += [
            f"{rule.describe()} → {rule.adjustment} after {_num(float(rule.breach_duration))} s"
            for rule in self.rules
        ]
        parts.append(f"cool-down {_num(float(self.cool_down))} s")
        if self.min_instances == 0:
            parts.append(f"to zero after {_num(float(self.idle_period))} s idle")
        return "; ".join(parts)

    def clamp(self, count: int) -> int:
        """``count`` within the bounds, never below one (scaling to zero is the idle rule's)."""
        return max(self.min_instances, 1, min(self.max_instances, count))


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") if value != int(value) else str(int(value))
