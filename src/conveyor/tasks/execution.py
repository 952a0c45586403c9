"""One launch of a composed task: its record, and the executor that walks its definition.

The executor runs the definition's main flow step by step through a
:class:`StepLauncher` (the platform's target, in production; a script in
tests). A step's exit code and exit status pick a transition; a split's flows
run side by side, at most ``width`` steps at once; ``stop`` cancels what runs
and marks the rest; ``restart`` runs again what failed or never ran, reusing the
results of the steps that completed. Every change of state is handed to
``save`` before the executor goes on, so the registry never holds half a move.

Example::

    execution = new_execution("nightly", definition_text, params={"date": "2026-12-05"})
    await Executor(parse_definition(definition_text), execution, launcher, save).run()
    execution.state, execution.steps["train-gbm"].run_id
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.tasks.dsl import App, Definition, Flow, Split
from conveyor.tasks.dsl.nodes import END
from conveyor.tasks.errors import TaskError
from conveyor.tasks.states import ExecutionState, StepState, check_move

__all__ = [
    "Execution",
    "Executor",
    "StepLaunch",
    "StepLauncher",
    "StepRecord",
    "StepResult",
    "mark_interrupted",
    "new_execution",
    "prepare_restart",
]

COMPLETED = "COMPLETED"
FAILED = "FAILED"


@dataclass
class StepRecord:
    """One step of one execution, as ``task execution status`` shows it."""

    name: str
    app: str
    params: dict[str, str] = field(default_factory=dict)
    state: StepState = StepState.PENDING
    exit_code: int | None = None
    exit_status: str | None = None
    run_id: str | None = None
    cached: bool = False
    reason: str | None = None
    #: The steps whose end led to this one (lineage through the pipeline).
    after: list[str] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0

    def move(self, state: StepState, reason: str | None = None) -> None:
        check_move(f"step {self.name!r}", self.state, state)
        self.state = state
        if reason is not None:
            self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "app": self.app,
            "params": dict(self.params),
            "state": self.state.value,
            "exit_code": self.exit_code,
            "exit_status": self.exit_status,
            "run_id": self.run_id,
            "cached": self.cached,
            "reason": self.reason,
            "after": list(self.after),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        return cls(**{**data, "state": StepState(data["state"])})


@dataclass
class Execution:
    """One launch of a task (and its restarts): the whole's state and each step's."""

    id: str
    task: str
    definition: str
    #: Launch parameters given to every step (``--arguments "--date=..."``).
    params: dict[str, str] = field(default_factory=dict)
    #: ``app.<step>.<key>=value`` deployment properties, as given.
    properties: dict[str, str] = field(default_factory=dict)
    state: ExecutionState = ExecutionState.RUNNING
    steps: dict[str, StepRecord] = field(default_factory=dict)
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    attempts: int = 1
    no_cache: bool = False
    #: The Kubernetes target whose Jobs run the steps (None: this machine), and their image.
    target: str | None = None
    image: str | None = None

    def move(self, state: ExecutionState, reason: str | None = None) -> None:
        check_move(f"execution {self.id}", self.state, state)
        self.state = state
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "definition": self.definition,
            "params": dict(self.params),
            "properties": dict(self.properties),
            "state": self.state.value,
            "steps": [s.to_json() for s in self.steps.values()],
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "attempts": self.attempts,
            "no_cache": self.no_cache,
            "target": self.target,
            "image": self.image,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Execution:
        steps = {s["name"]: StepRecord.from_json(s) for s in data["steps"]}
        return cls(**{**data, "state": ExecutionState(data["state"]), "steps": steps})


def _step_params(app: App, execution: Execution) -> dict[str, str]:
    """A step's parameters: its definition's, then ``app.<app or step>.*`` properties."""
    params = {a.name: a.value for a in app.arguments}
    for prefix in (f"app.{app.name}.", f"app.{app.step}."):
        for key, value in execution.properties.items():
            if key.startswith(prefix):
                params[key[len(prefix) :]] = value
    return params


def new_execution(
    task: str,
    definition: Definition,
    text: str,
    *,
    params: Mapping[str, str] | None = None,
    properties: Mapping[str, str] | None = None,
    no_cache: bool = False,
) -> Execution:
    """A RUNNING execution with every step of ``definition`` PENDING."""
    execution = Execution(
        os.urandom(6).hex(),
        task,
        text,
        dict(params or {}),
        dict(properties or {}),
        no_cache=no_cache,
    )
    for app in definition.apps():
        execution.steps[app.step] = StepRecord(app.step, app.name, _step_params(app, execution))
    return execution


def prepare_restart(execution: Execution, params: Mapping[str, str] | None = None) -> None:
    """Make a FAILED or STOPPED execution runnable again; refuse, saying why, otherwise.

    Completed steps keep their results (their exit status still drives the
    flow); every other step goes back to PENDING. The original parameters
    stay unless new ones are given.
    """
    if execution.state is ExecutionState.COMPLETED:
        raise TaskError(
            f"execution {execution.id} of {execution.task!r} completed; nothing failed to "
            "restart. Launch the task again instead: conveyor task launch " + execution.task
        )
    if execution.state is ExecutionState.RUNNING:
        raise TaskError(
            f"execution {execution.id} of {execution.task!r} is still running; stop it first "
            f"(conveyor task execution stop {execution.id}) or wait for it to end"
        )
    execution.move(ExecutionState.RUNNING)
    execution.attempts += 1
    execution.ended_at = None
    if params is not None:
        execution.params = dict(params)
    for step in execution.steps.values():
        if step.state is not StepState.COMPLETED:
            step.move(StepState.PENDING)
            step.reason = None


def mark_interrupted(execution: Execution, reason: str) -> bool:
    """After the platform went down mid-execution: STOPPED (restartable), nothing half-done.

    A step that was RUNNING is STOPPED (its process went with the platform); its
    run record, if any, is the recorder's to finish. Returns whether anything changed.
    """
    if execution.state is not ExecutionState.RUNNING:
        return False
    for step in execution.steps.values():
        if step.state in (StepState.RUNNING, StepState.PENDING):
            step.move(StepState.STOPPED, reason)
            step.ended_at = step.ended_at or time.time()
    execution.move(ExecutionState.STOPPED, reason)
    execution.ended_at = time.time()
    return True


@dataclass(frozen=True)
class StepLaunch:
    """What a launcher needs to run one step."""

    execution: Execution
    step: StepRecord
    no_cache: bool = False


@dataclass(frozen=True)
class StepResult:
    """How a step ended: exit code, the status it set (if any), its run, whether cached."""

    exit_code: int
    exit_status: str | None = None
    run_id: str | None = None
    cached: bool = False
    reason: str | None = None


class StepLauncher(Protocol):
    """Runs one step to its end; cancelling the call must stop the step's process."""

    async def run_step(self, launch: StepLaunch) -> StepResult: ...


#: How a flow ended: it ran to its end, or the execution must fail or stop.
_OK, _FAILED, _STOPPED = "ok", "failed", "stopped"


class Executor:
    """Walks one execution of a definition; see the module's docstring."""

    def __init__(
        self,
        definition: Definition,
        execution: Execution,
        launcher: StepLauncher,
        save: Callable[[Execution], None] = lambda _e: None,
        *,
        width: int = 4,
    ) -> None:
        self.definition = definition
        self.execution = execution
        self.launcher = launcher
        self.save = save
        self._slots = asyncio.Semaphore(max(1, width))
        self._running: set[asyncio.Task[StepResult]] = set()
        self._stop_reason: str | None = None
        self._visited: set[str] = set()
        self._places = self._index()

    def _index(self) -> dict[str, tuple[Flow, int]]:
        """Each label -> the flow holding it and its place there (where a jump goes)."""
        places: dict[str, tuple[Flow, int]] = {}

        def walk(flow: Flow) -> None:
            for index, element in enumerate(flow.elements):
                if element.label:
                    places[element.label] = (flow, index)
                if isinstance(element, Split):
                    for inner in element.flows:
                        walk(inner)
                else:
                    for t in element.transitions:
                        if t.app is not None and t.app.label:
                            places[t.app.label] = (Flow((t.app,)), 0)

        for sequence in self.definition.sequences:
            walk(sequence)
        return places

    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (a method: the answer changes across awaits)."""
        return self._stop_reason is not None

    def stop(self, reason: str = "stopped by a user") -> None:
        """Stop the running steps (their processes are killed) and mark the rest STOPPED."""
        self._stop_reason = reason
        for task in list(self._running):
            task.cancel()

    async def run(self) -> Execution:
        """Run (or, after :func:`prepare_restart`, resume) the execution to its end."""
        self.save(self.execution)
        outcome, _ = await self._flow(self.definition.main, 0, ())
        execution = self.execution
        if self._stop_reason is not None:
            outcome = _STOPPED
        final = {
            _OK: ExecutionState.COMPLETED,
            _FAILED: ExecutionState.FAILED,
            _STOPPED: ExecutionState.STOPPED,
        }[outcome]
        leftover = StepState.STOPPED if final is ExecutionState.STOPPED else StepState.SKIPPED
        for step in execution.steps.values():
            if step.state is StepState.PENDING:
                step.move(leftover, self._stop_reason or "the flow did not reach it")
        reason = self._stop_reason if final is ExecutionState.STOPPED else execution.reason
        execution.move(final, reason if final is not ExecutionState.COMPLETED else None)
        execution.ended_at = time.time()
        self.save(execution)
        return execution

    async def _flow(
        self, flow: Flow, start: int, before: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...]]:
        """Run ``flow`` from element ``start``; returns its outcome and its last steps."""
        for element in flow.elements[start:]:
            if self._stop_reason is not None:
                return _STOPPED, before
            if isinstance(element, Split):
                outcome, before = await self._split(element, before)
                if outcome != _OK:
                    return outcome, before
                continue
            outcome, before, jumped = await self._app(element, before)
            if outcome != _OK or jumped:
                return outcome, before
        return _OK, before

    async def _split(self, split: Split, before: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        results = await asyncio.gather(*(self._flow(f, 0, before) for f in split.flows))
        last = tuple(name for _, names in results for name in names)
        for wanted in (_STOPPED, _FAILED):
            if any(outcome == wanted for outcome, _ in results):
                return wanted, last
        return _OK, last

    async def _app(self, app: App, before: tuple[str, ...]) -> tuple[str, tuple[str, ...], bool]:
        """Run one step and take its transition: (outcome, last steps, whether it jumped)."""
        step = self.execution.steps[app.step]
        if step.name in self._visited:
            self.execution.reason = (
                f"step {step.name!r} would run a second time (a transition leads back to it); "
                "a step runs once per execution"
            )
            return _FAILED, before, True
        result = await self._step(step, before)
        if result is None:
            return _STOPPED, before, True
        status = step.exit_status or (COMPLETED if step.exit_code == 0 else FAILED)
        code = step.exit_code if step.exit_code is not None else -1
        done = (step.name,)
        for transition in app.transitions:
            if not transition.matches(code, status):
                continue
            if transition.app is not None:
                outcome, last, _ = await self._app(transition.app, done)
                return outcome, last, True
            if transition.label is not None:
                flow, index = self._places[transition.label]
                outcome, last = await self._flow(flow, index, done)
                return outcome, last, True
            if transition.ending == END:
                return _OK, done, True
            self.execution.reason = f"step {step.name!r} ended {status}: its transition is $FAIL"
            return _FAILED, done, True
        if step.state is StepState.FAILED:
            self.execution.reason = (
                f"step {step.name!r} failed ({step.reason or status}) and no transition matched"
            )
            return _FAILED, done, False
        return _OK, done, False

    async def _step(self, step: StepRecord, before: tuple[str, ...]) -> StepRecord | None:
        """Launch ``step`` (or reuse its earlier completion); None when stopped."""
        if step.state is StepState.COMPLETED and step.name not in self._visited:
            self._visited.add(step.name)
            return step  # completed in an earlier attempt: keep its result
        self._visited.add(step.name)
        async with self._slots:
            if self._stop_reason is not None:
                return None
            step.move(StepState.RUNNING)
            step.after = list(before)
            step.attempts += 1
            step.started_at, step.ended_at = time.time(), None
            step.exit_code = step.exit_status = step.run_id = None
            step.cached = False
            self.save(self.execution)
            launch = StepLaunch(self.execution, step, self.execution.no_cache)
            task = asyncio.ensure_future(self.launcher.run_step(launch))
            self._running.add(task)
            try:
                result = await task
            except asyncio.CancelledError:
                if not self.stopping():
                    raise
                step.move(StepState.STOPPED, self._stop_reason)
                step.ended_at = time.time()
                self.save(self.execution)
                return None
            except TaskError as error:
                result = StepResult(-1, FAILED, reason=str(error))
            finally:
                self._running.discard(task)
        step.exit_code, step.exit_status = result.exit_code, result.exit_status
        step.run_id, step.cached = result.run_id, result.cached
        step.ended_at = time.time()
        if result.exit_code == 0:
            step.move(StepState.COMPLETED, result.reason)
        else:
            step.move(StepState.FAILED, result.reason or f"exit code {result.exit_code}")
        self.save(self.execution)
        return step
