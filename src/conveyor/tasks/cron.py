"""Five-field cron expressions (as Kubernetes CronJobs take them) in a time zone.

``minute hour day-of-month month day-of-week``; each field ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those; months
and weekdays may be named (``jan``, ``mon``); 0 and 7 are both Sunday. As in
Vixie cron, when both day fields are restricted a day matching either fires.
Written here rather than taken from croniter, whose maintenance is in doubt;
it is small, and the tests pin its behaviour.

>>> cron = Cron.parse("0 2 * * *", "Europe/London")
>>> cron.next_after(1764899999.0)  # 2025-12-05 02:00 UTC is 02:00 in London in winter
1764900000.0
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.tasks.errors import TaskError

__all__ = ["Cron", "CronError"]

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
#: How far ahead to look for a fire time before calling an expression one that never fires.
_HORIZON_DAYS = 366 * 5


class CronError(TaskError):
    """A cron expression or time zone that cannot be used; says which field and why."""

    exit_code = 2


def _number(text: str, index: int, expression: str) -> int:
    name, low, high = _FIELDS[index]
    value = _NAMES.get(index, {}).get(text.lower())
    if value is None:
        if not text.isdigit():
            raise CronError(
                f"cron {expression!r}: the {name} field has {text!r}; expected a number "
                f"{low}-{high}" + (" or a name" if index in _NAMES else "")
            )
        value = int(text)
    if not low <= value <= high:
        raise CronError(f"cron {expression!r}: the {name} field has {value}; expected {low}-{high}")
    return value


def _field(text: str, index: int, expression: str) -> frozenset[int]:
    name, low, high = _FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(
                    f"cron {expression!r}: the {name} field has step {step_text!r}; "
                    "expected a positive number"
                )
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _number(a, index, expression), _number(b, index, expression)
            if first > last:
                raise CronError(
                    f"cron {expression!r}: the {name} field has the range {span}; "
                    "expected the smaller number first"
                )
        else:
            first = _number(span, index, expression)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: Whether the day-of-month / day-of-week field was ``*`` (Vixie cron's OR rule).
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Parse ``expression`` in ``timezone`` (an IANA name); CronError naming the field."""
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(
                f"cron {expression!r} has {len(fields)} fields; expected 5: minute hour "
                "day-of-month month day-of-week (e.g. '0 2 * * *')"
            )
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise CronError(
                f"unknown time zone {timezone!r}; expected an IANA name such as Europe/London"
            ) from error
        minutes, hours, days, months, weekdays = (
            _field(text, i, expression) for i, text in enumerate(fields)
        )
        cron = cls(
            expression,
            timezone,
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day=fields[2].startswith("*"),
            any_weekday=fields[4].startswith("*"),
        )
        cron.next_after(0.0)  # refuse what never fires (e.g. 30 February) now, not at run time
        return cron

    def _day_matches(self, day: dt.date) -> bool:
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, after: float) -> float:
        """The first fire time strictly after ``after`` (epoch seconds), as epoch seconds."""
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.fromtimestamp(after, zone).replace(tzinfo=None, second=0, microsecond=0)
        start += dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(_HORIZON_DAYS):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        wall = dt.datetime.combine(day, dt.time(hour, minute))
                        if wall < start:
                            continue
                        at = wall.replace(tzinfo=zone).timestamp()
                        if at > after:
                            return at
            day += dt.timedelta(days=1)
        raise CronError(f"cron {self.expression!r} never fires; check its day and month fields")
