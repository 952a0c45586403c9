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

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.platform.target import InstanceStatus

__all__ = ["CrashBackoff", "crash_looping"]


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


def crash_looping(
    revisions: Collection[int], statuses: Iterable[InstanceStatus], held: Mapping[int, str]
) -> dict[int, str]:
    """Which of ``revisions`` crash-loop, and why: one with an instance waiting out its crash
    backoff, or one ``held`` already that does not yet have every instance running (a restart
    after the backoff is not recovery until it runs)."""
    looping: dict[int, str] = {}
    mine = [s for s in statuses if s.revision in revisions]
    for status in mine:
        if status.state == "CRASHED" and status.revision not in looping:
            reason = (status.last_crash or {}).get("reason", "crashed")
            looping[status.revision] = (
                f"revision {status.revision} is crash-looping: instance {status.index} "
                f"restarted {status.restarts} times (last: {reason})"
            )
    for revision, why in held.items():
        if revision not in looping and any(
            s.revision == revision and s.state != "RUNNING" for s in mine
        ):
            looping[revision] = why
    return looping
