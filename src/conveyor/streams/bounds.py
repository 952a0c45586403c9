"""What one expression evaluation may build and do, and the guarded operations that check it.

Every operation that could grow a value (``+``, ``*``, ``**``, ``%`` formatting,
``join``, ``upper`` ...) estimates the size of its result from its operands
*before* building it, so ``'%2000000000s' % 'a'`` or ``join('', ['a'*100000]*100000)``
is refused instead of allocating gigabytes. Sizes are counted in *units*: a
character of a string, an item of a list or dict (plus what the item holds), a
few for a number. The same units are charged to a per-evaluation *work* budget,
together with one per operation and one per item walked when a container's
size must be measured, so the whole evaluation is bounded, not only each step.

>>> budget = Budget(Limits(size=20))
>>> repeat(["ab"], 3, budget)
['ab', 'ab', 'ab']
>>> repeat(["ab"], 5, budget)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
conveyor.streams.bounds.OverLimit: the value built would hold about 30 units; the limit is 20 ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.streams.errors import ExpressionError

__all__ = ["DEFAULT_LIMITS", "Budget", "Limits", "OverLimit"]


@dataclass(frozen=True)
class Limits:
    """How much one evaluation may build and do; going past any limit fails the evaluation."""

    #: Largest integer built, in bits (65,536 bits: about 19,700 decimal digits).
    int_bits: int = 1 << 16
    #: Largest string, list or dict built, in units (characters; items plus what they hold).
    size: int = 4 * 1024 * 1024
    #: Largest width or precision in ``%`` formatting, and largest ``round`` digits.
    width: int = 1000
    #: Work per evaluation: units built or walked plus one per operation.
    work: int = 16 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class OverLimit(ExpressionError, ValueError):
    """An operation would go past one of the :class:`Limits` (refused before it runs).

    Also a ValueError, so an evaluation reports it as any failed operation is reported.
    """


class Budget:
    """The work left to one evaluation, and the limits its operations check."""

    __slots__ = ("left", "limits")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.left = limits.work

    def reset(self) -> None:
        self.left = self.limits.work

    @property
    def used(self) -> int:
        """Units of work spent since the budget was made or reset."""
        return self.limits.work - self.left

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise OverLimit(
                f"the evaluation needs more than {self.limits.work} units of work "
                "(each character or item built or walked is one)"
            )

    def built(self, units: int) -> None:
        """Charge for building a value of ``units``; refuse one past the size limit."""
        if units > self.limits.size:
            raise OverLimit(
                f"the value built would hold about {units} units; the limit is "
                f"{self.limits.size} (characters of a string, items of a list)"
            )
        self.charge(units)

    def bits(self, bits: int) -> None:
        if bits > self.limits.int_bits:
            raise OverLimit(
                f"the integer built would have about {bits} bits; the limit is "
                f"{self.limits.int_bits}"
            )


def size(value: Any, budget: Budget) -> int:
    """Units ``value`` holds (about its length as text); containers are walked and charged."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += len(item) + 1
        elif kind is list or kind is tuple:
            budget.charge(len(item))
            total += len(item) + 2
            stack.extend(item)
        elif kind is dict:
            budget.charge(len(item))
            total += 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif kind is int:
            total += item.bit_length() // 3 + 2
        else:  # float, bool, None, and anything else a payload holds: a few characters
            total += 8
    return total


def add(a: Any, b: Any, budget: Budget) -> Any:
    budget.charge(1)
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        budget.bits(max(a.bit_length(), b.bit_length()) + 1)
    elif ta is tb and ta in (str, list, tuple):
        budget.built(size(a, budget) + size(b, budget))
    return a + b


def sub(a: Any, b: Any, budget: Budget) -> Any:
    budget.charge(1)
    if type(a) is int and type(b) is int:
        budget.bits(max(a.bit_length(), b.bit_length()) + 1)
    return a - b


def repeat(seq: Any, n: int, budget: Budget) -> Any:
    """``seq * n`` for a string or list, refused when the result would be too large."""
    if n > 0:
        budget.built(size(seq, budget) * n)
    return seq * n


def mul(a: Any, b: Any, budget: Budget) -> Any:
    budget.charge(1)
    if isinstance(a, int) and isinstance(b, int):
        budget.bits(a.bit_length() + b.bit_length())
        return a * b
    if isinstance(b, int) and isinstance(a, str | list | tuple):
        return repeat(a, b, budget)
    if isinstance(a, int) and isinstance(b, str | list | tuple):
        return repeat(b, a, budget)
    return a * b


def power(a: Any, b: Any, budget: Budget) -> Any:
    budget.charge(1)
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        budget.bits(a.bit_length() * b)
    return a**b


#: One %-conversion: flags, width, precision, length modifier, type (or a literal %%).
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def format_text(template: str, args: Any, budget: Budget) -> str:
    """``template % args`` with every width and precision bounded, and the result's size."""
    width = budget.limits.width
    conversions = 0
    for match in _CONVERSION.finditer(template):
        if match.group(3) == "%":
            continue
        conversions += 1
        for number in (match.group(1), match.group(2)):
            if number == "*":
                raise OverLimit("'*' widths in % formatting are not allowed; write the width")
            if number and (len(number) > 6 or int(number) > width):
                raise OverLimit(f"a % format width or precision of {number} is over {width}")
    # Each conversion writes at most a width, or the text of (one of) the arguments.
    budget.built(len(template) + conversions * (width + size(args, budget)))
    text: str = template % args
    return text


def modulo(a: Any, b: Any, budget: Budget) -> Any:
    budget.charge(1)
    if isinstance(a, str):
        return format_text(a, b, budget)
    return a % b


# -- functions ---------------------------------------------------------------------------------


def _text(value: Any, budget: Budget) -> str:
    """``str(value)`` once its size is known to fit."""
    if type(value) is str:
        budget.charge(len(value))
        return value
    budget.built(size(value, budget))
    return str(value)


def _join(sep: Any, items: Any, budget: Budget) -> str:
    if not isinstance(sep, str) or not isinstance(items, str | list | tuple | dict):
        raise TypeError("join(separator, items) takes a text and a list")
    budget.built(len(sep) * len(items) + size(items, budget))
    return sep.join([str(i) for i in items])


def _split(*args: Any) -> list[str]:
    *values, budget = args
    if not 1 <= len(values) <= 2:
        raise TypeError(f"split takes a text and an optional separator, not {len(values)} values")
    text, sep = values[0], values[1] if len(values) == 2 else None
    if not isinstance(text, str):
        raise TypeError(f"split takes a text, not a {type(text).__name__}")
    if sep is not None and not isinstance(sep, str):
        raise TypeError(f"split's separator must be a text, not a {type(sep).__name__}")
    parts = len(text) // 2 + 1 if sep is None else text.count(sep) + 1 if sep else 1
    budget.built(len(text) + parts)
    return text.split(sep)


def _round(*args: Any) -> Any:
    *values, budget = args
    digits = values[1] if len(values) == 2 else None
    if isinstance(digits, int) and abs(digits) > budget.limits.width:
        raise OverLimit(f"round to {digits} digits: at most {budget.limits.width} are allowed")
    return round(*values)


def _over(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(text)`` for a text-to-text function, charged and bounded on its input's size."""

    def guarded(value: Any, budget: Budget) -> Any:
        return fn(_text(value, budget))

    return guarded


def _walks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(*args)`` charged one unit per item of its first argument (max, min, contains)."""

    def guarded(*args: Any) -> Any:
        *values, budget = args
        if values and isinstance(values[0], str | list | tuple | dict):
            budget.charge(len(values[0]))
        return fn(*values)

    return guarded


def _integer(*args: Any) -> Any:
    *values, budget = args
    budget.charge(1)
    value = int(*values)
    budget.bits(value.bit_length())
    return value


#: Bounded versions of the expression language's functions; each takes the budget last.
GUARDED: Mapping[str, Callable[..., Any]] = {
    "int": _integer,
    "join": _join,
    "split": _split,
    "round": _round,
    "lower": _over(str.lower),
    "upper": _over(str.upper),
    "strip": _over(str.strip),
    "str": _over(lambda text: text),
    "max": _walks(max),
    "min": _walks(min),
    "contains": _walks(lambda container, item: item in container),
}
