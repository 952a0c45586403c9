"""The lifecycle of a task execution and of each of its steps: named states, legal moves.

A step::

    PENDING ──> RUNNING ──> COMPLETED
       │           ├──────> FAILED ───┐
       │           └──────> STOPPED ──┤  (restart: back to PENDING)
       ├──> SKIPPED ──────────────────┤
       └──> STOPPED ──────────────────┘

An execution::

    RUNNING ──> COMPLETED
       ├──────> FAILED ──┐
       └──────> STOPPED ─┴──> RUNNING (restart)

A move that is not drawn raises :class:`IllegalTaskTransition`, naming both states.
"""

from __future__ import annotations

import enum

from conveyor.tasks.errors import TaskError

__all__ = ["ExecutionState", "IllegalTaskTransition", "StepState", "check_move"]


class IllegalTaskTransition(TaskError):
    """A step or execution was asked to move between states that are not connected."""


class StepState(enum.Enum):
    #: Not run yet in this attempt (or reset by a restart).
    PENDING = "PENDING"
    #: Its process runs now.
    RUNNING = "RUNNING"
    #: It ran (or was reused from the cache) and its exit status drove the next move.
    COMPLETED = "COMPLETED"
    #: It exited non-zero, was killed, timed out, or could not start; logs are kept.
    FAILED = "FAILED"
    #: The execution was stopped while it waited or ran.
    STOPPED = "STOPPED"
    #: The flow took another way (a transition), so it was never needed.
    SKIPPED = "SKIPPED"


class ExecutionState(enum.Enum):
    #: Steps are being launched.
    RUNNING = "RUNNING"
    #: The flow reached its end (or ``$END``).
    COMPLETED = "COMPLETED"
    #: A step failed with no transition to take, or a transition went to ``$FAIL``; restartable.
    FAILED = "FAILED"
    #: Stopped by a user, or by the platform going down mid-execution; restartable.
    STOPPED = "STOPPED"


_STEP_MOVES: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED, StepState.STOPPED}),
    StepState.RUNNING: frozenset({StepState.COMPLETED, StepState.FAILED, StepState.STOPPED}),
    StepState.COMPLETED: frozenset(),
    StepState.FAILED: frozenset({StepState.PENDING}),
    StepState.STOPPED: frozenset({StepState.PENDING}),
    StepState.SKIPPED: frozenset({StepState.PENDING}),
}
_EXECUTION_MOVES: dict[ExecutionState, frozenset[ExecutionState]] = {
    ExecutionState.RUNNING: frozenset(
        {ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.STOPPED}
    ),
    ExecutionState.COMPLETED: frozenset(),
    ExecutionState.FAILED: frozenset({ExecutionState.RUNNING}),
    ExecutionState.STOPPED: frozenset({ExecutionState.RUNNING}),
}


def check_move(what: str, old: StepState | ExecutionState, new: StepState | ExecutionState) -> None:
    """Raise :class:`IllegalTaskTransition` unless ``old -> new`` is drawn above."""
    moves: dict[StepState, frozenset[StepState]] | dict[ExecutionState, frozenset[ExecutionState]]
    moves = _STEP_MOVES if isinstance(old, StepState) else _EXECUTION_MOVES
    if new not in moves[old]:  # type: ignore[index]
        allowed = ", ".join(sorted(s.value for s in moves[old])) or "nothing (it is final)"  # type: ignore[index]
        raise IllegalTaskTransition(
            f"{what} cannot go from {old.value} to {new.value}; from {old.value} it can go to "
            f"{allowed}"
        )
