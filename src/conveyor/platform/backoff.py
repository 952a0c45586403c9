"""Cloud Foundry's crash-restart schedule, as a pure function of the crash history.

Three immediate restarts, then waits of 30 s doubling up to a cap (16 min);
the crash count resets once an instance has run for five minutes.

>>> b = CrashBackoff()
>>> [b.delay(n) for n in range(1, 9)]
[0.0, 0.0, 0.0, 30.0, 60.0, 120.0, 240.0, 480.0]
>>> b.delay(20)
960.0
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CrashBackoff"]


@dataclass(frozen=True)
class CrashBackoff:
    """When to restart an instance after its ``n``-th consecutive crash."""

    immediate: int = 3
    first_wait: float = 30.0
    cap: float = 16 * 60.0
    #: Running this long without crashing wipes the crash count.
    reset_after: float = 5 * 60.0
    #: Diego gives up after 200 crashes in a row; None restarts forever.
    give_up_after: int | None = 200

    def delay(self, crashes: int) -> float:
        """Seconds to wait before restarting after ``crashes`` consecutive crashes."""
        if crashes <= self.immediate:
            return 0.0
        exponent = crashes - self.immediate - 1
        # Past ~2**10 the cap has long been reached; avoid huge floats.
        return min(self.cap, self.first_wait * 2.0 ** min(exponent, 32))

    def count_after_crash(self, previous: int, ran_for: float) -> int:
        """The consecutive-crash count once a crash after ``ran_for`` seconds is added."""
        return 1 if ran_for >= self.reset_after else previous + 1

    def gives_up(self, crashes: int) -> bool:
        """Whether the instance should stay CRASHED instead of restarting."""
        return self.give_up_after is not None and crashes > self.give_up_after
