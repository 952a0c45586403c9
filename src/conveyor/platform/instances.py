"""Instance lifecycle states and the transitions allowed between them.

>>> s = InstanceState.DOWN
>>> s = transition(s, InstanceState.STARTING, where="iris/0")
>>> transition(s, InstanceState.DOWN, where="iris/0")
Traceback (most recent call last):
...
conveyor.platform.errors.IllegalTransition: instance iris/0 cannot go from STARTING to DOWN; ...
"""

from __future__ import annotations

import enum

from conveyor.platform.errors import IllegalTransition

__all__ = ["InstanceState", "transition"]


class InstanceState(enum.Enum):
    """Where one instance (one process of a revision) is in its life."""

    #: Its process was spawned; the startup health check has not passed yet.
    STARTING = "STARTING"
    #: The startup health check passed; liveness is now checked periodically.
    RUNNING = "RUNNING"
    #: Its process exited on its own, failed liveness or broke its memory limit;
    #: it waits for its restart (immediately, or after the crash backoff).
    CRASHED = "CRASHED"
    #: A stop was asked for: SIGTERM was sent to its process group, SIGKILL follows
    #: after the grace period.
    STOPPING = "STOPPING"
    #: No process runs: not started yet, or stopped on purpose.
    DOWN = "DOWN"


_S = InstanceState

#: Every legal move; anything else is a bug in the caller and raises.
LEGAL: dict[InstanceState, frozenset[InstanceState]] = {
    _S.DOWN: frozenset({_S.STARTING}),
    _S.STARTING: frozenset({_S.RUNNING, _S.CRASHED, _S.STOPPING}),
    _S.RUNNING: frozenset({_S.CRASHED, _S.STOPPING}),
    # A crashed instance has no process left: a stop takes it straight to DOWN.
    _S.CRASHED: frozenset({_S.STARTING, _S.DOWN}),
    _S.STOPPING: frozenset({_S.DOWN}),
}


def transition(current: InstanceState, new: InstanceState, *, where: str) -> InstanceState:
    """Return ``new`` if an instance may move there from ``current``, else raise."""
    if new not in LEGAL[current]:
        allowed = ", ".join(sorted(s.value for s in LEGAL[current]))
        raise IllegalTransition(
            f"instance {where} cannot go from {current.value} to {new.value}; "
            f"from {current.value} it can only go to {allowed}"
        )
    return new
