"""Executions against a scripted launcher: order, splits, transitions, failure, stop and restart."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest

from conveyor.tasks.dsl import parse_definition
from conveyor.tasks.errors import TaskError
from conveyor.tasks.execution import (
    Execution,
    Executor,
    StepLaunch,
    StepRecord,
    StepResult,
    mark_interrupted,
    new_execution,
    prepare_restart,
)
from conveyor.tasks.states import ExecutionState, IllegalTaskTransition, StepState


def _in_a_loop(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test in a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())  # type: ignore[arg-type]

    return run


class Script:
    """A launcher whose steps end as told: exit codes and statuses by step name."""

    def __init__(self, **outcomes: int | tuple[int, str]) -> None:
        self.outcomes = outcomes
        self.launched: list[str] = []
        self.params: dict[str, dict[str, str]] = {}
        self.running = 0
        self.most = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}

    def gate(self, step: str) -> asyncio.Event:
        return self.gates.setdefault(step, asyncio.Event())

    def began(self, step: str) -> asyncio.Event:
        return self.started.setdefault(step, asyncio.Event())

    async def run_step(self, launch: StepLaunch) -> StepResult:
        name = launch.step.name
        self.launched.append(name)
        self.params[name] = {**launch.execution.params, **launch.step.params}
        self.running += 1
        self.most = max(self.most, self.running)
        self.began(name).set()
        try:
            if name in self.gates:
                await self.gates[name].wait()
            else:
                await asyncio.sleep(0)  # let siblings in a split start
        finally:
            self.running -= 1
        outcome = self.outcomes.get(name, 0)
        code, status = outcome if isinstance(outcome, tuple) else (outcome, None)
        return StepResult(code, status, run_id=f"run-{name}-{len(self.launched)}")


def _start(text: str, **params: str) -> tuple[Execution, Callable[..., Executor]]:
    definition = parse_definition(text)
    execution = new_execution("t", definition, text, params=params)

    def executor(script: Script, width: int = 4) -> Executor:
        return Executor(definition, execution, script, width=width)

    return execution, executor


def _states(execution: Execution) -> dict[str, str]:
    return {name: step.state.value for name, step in execution.steps.items()}


@_in_a_loop
async def test_a_flow_runs_in_order_and_links_each_step_to_the_one_before() -> None:
    execution, executor = _start("a && b && c")
    script = Script()
    await executor(script).run()
    assert script.launched == ["a", "b", "c"]
    assert execution.state is ExecutionState.COMPLETED
    assert execution.steps["c"].after == ["b"]
    assert execution.steps["b"].run_id == "run-b-2"


@_in_a_loop
async def test_a_split_runs_side_by_side_and_the_next_step_follows_all_of_it() -> None:
    execution, executor = _start("a && <b || c && d> && e")
    script = Script()
    both = asyncio.Event()
    script.gate("b")
    script.gate("c")

    async def release_when_both_run() -> None:
        await script.began("b").wait()
        await script.began("c").wait()
        both.set()
        script.gate("b").set()
        script.gate("c").set()

    helper = asyncio.ensure_future(release_when_both_run())
    await executor(script).run()
    await helper
    assert both.is_set()
    assert execution.state is ExecutionState.COMPLETED
    assert sorted(execution.steps["e"].after) == ["b", "d"]


@_in_a_loop
async def test_a_split_never_runs_more_steps_at_once_than_its_width() -> None:
    execution, executor = _start("<a || b || c || d>")
    script = Script()
    await executor(script, width=2).run()
    assert script.most == 2
    assert execution.state is ExecutionState.COMPLETED


@_in_a_loop
async def test_a_failed_step_without_a_transition_fails_the_execution() -> None:
    execution, executor = _start("a && b && c", date="2026-12-05")
    await executor(Script(b=3)).run()
    assert execution.state is ExecutionState.FAILED
    assert _states(execution) == {"a": "COMPLETED", "b": "FAILED", "c": "SKIPPED"}
    assert "step 'b' failed (exit code 3)" in (execution.reason or "")


@_in_a_loop
async def test_a_transition_on_failure_runs_its_app_instead_of_the_rest() -> None:
    execution, executor = _start("a 'FAILED'->alert && b")
    script = Script(a=1)
    await executor(script).run()
    assert script.launched == ["a", "alert"]
    assert execution.state is ExecutionState.COMPLETED
    assert _states(execution) == {"a": "FAILED", "alert": "COMPLETED", "b": "SKIPPED"}


@_in_a_loop
async def test_transitions_match_a_status_the_step_set_and_exit_codes() -> None:
    _, executor = _start("a 'NO_DATA'->quiet 2->two && b")
    script = Script(a=(0, "NO_DATA"))
    await executor(script).run()
    assert script.launched == ["a", "quiet"]
    _, executor = _start("a 'NO_DATA'->quiet 2->two && b")
    script = Script(a=2)
    await executor(script).run()
    assert script.launched == ["a", "two"]


@_in_a_loop
async def test_end_and_fail_end_the_execution() -> None:
    execution, executor = _start("a 'COMPLETED'->$END && b")
    await executor(Script()).run()
    assert (execution.state, execution.steps["b"].state) == (
        ExecutionState.COMPLETED,
        StepState.SKIPPED,
    )
    execution, executor = _start("a '*'->$FAIL && b")
    await executor(Script()).run()
    assert execution.state is ExecutionState.FAILED
    assert "$FAIL" in (execution.reason or "")


@_in_a_loop
async def test_a_jump_to_a_label_runs_that_sequence() -> None:
    execution, executor = _start("a 'FAILED'->:recover && b; recover: r1 && r2")
    script = Script(a=1)
    await executor(script).run()
    assert script.launched == ["a", "recover", "r2"]
    assert execution.state is ExecutionState.COMPLETED


@_in_a_loop
async def test_a_transition_back_to_a_step_that_ran_fails_instead_of_looping() -> None:
    execution, executor = _start("top: a && b 'FAILED'->:top")
    await executor(Script(b=1)).run()
    assert execution.state is ExecutionState.FAILED
    assert "would run a second time" in (execution.reason or "")


@_in_a_loop
async def test_restart_reruns_failed_and_unrun_steps_with_the_original_params() -> None:
    execution, executor = _start("a && <b || c> && d", date="2026-12-05")
    await executor(Script(c=1)).run()
    assert _states(execution) == {"a": "COMPLETED", "b": "COMPLETED", "c": "FAILED", "d": "SKIPPED"}
    prepare_restart(execution)
    script = Script()
    await executor(script).run()
    assert sorted(script.launched) == ["c", "d"]
    assert script.params["d"] == {"date": "2026-12-05"}
    assert execution.state is ExecutionState.COMPLETED
    assert execution.attempts == 2


@_in_a_loop
async def test_restart_takes_new_params_when_given() -> None:
    execution, executor = _start("a", date="1")
    await executor(Script(a=1)).run()
    prepare_restart(execution, {"date": "2"})
    script = Script()
    await executor(script).run()
    assert script.params["a"] == {"date": "2"}


@_in_a_loop
async def test_restart_is_refused_when_nothing_failed_or_it_still_runs() -> None:
    execution, executor = _start("a")
    with pytest.raises(TaskError, match="still running"):
        prepare_restart(execution)
    await executor(Script()).run()
    with pytest.raises(TaskError, match="nothing failed to restart"):
        prepare_restart(execution)


@_in_a_loop
async def test_stop_mid_split_stops_running_steps_and_marks_the_rest() -> None:
    execution, executor = _start("a && <b || c> && d")
    script = Script()
    script.gate("b")
    script.gate("c")
    running = executor(script)
    done = asyncio.ensure_future(running.run())
    await script.began("b").wait()
    await script.began("c").wait()
    running.stop()
    await done
    assert execution.state is ExecutionState.STOPPED
    assert _states(execution) == {"a": "COMPLETED", "b": "STOPPED", "c": "STOPPED", "d": "STOPPED"}
    prepare_restart(execution)
    script = Script()
    await executor(script).run()
    assert sorted(script.launched) == ["b", "c", "d"]


def test_properties_reach_their_step() -> None:
    text = "a --n=1 && gbm: train --model=gbm"
    definition = parse_definition(text)
    execution = new_execution(
        "t", definition, text, properties={"app.gbm.n_estimators": "300", "app.a.n": "2"}
    )
    assert execution.steps["gbm"].params == {"model": "gbm", "n_estimators": "300"}
    assert execution.steps["a"].params == {"n": "2"}


def test_a_platform_that_died_leaves_the_execution_stopped_and_restartable() -> None:
    text = "a && b"
    execution = new_execution("t", parse_definition(text), text)
    execution.steps["a"].state = StepState.RUNNING
    assert mark_interrupted(execution, "the platform stopped while it ran")
    assert execution.state is ExecutionState.STOPPED
    assert _states(execution) == {"a": "STOPPED", "b": "STOPPED"}
    prepare_restart(execution)
    assert _states(execution) == {"a": "PENDING", "b": "PENDING"}


def test_illegal_moves_raise_with_both_states() -> None:
    step = StepRecord("a", "a", state=StepState.COMPLETED)
    with pytest.raises(IllegalTaskTransition, match="from COMPLETED to RUNNING"):
        step.move(StepState.RUNNING)
    text = "a"
    execution = new_execution("t", parse_definition(text), text)
    execution.move(ExecutionState.COMPLETED)
    with pytest.raises(IllegalTaskTransition, match="it is final"):
        execution.move(ExecutionState.RUNNING)


def test_an_execution_survives_its_json_form() -> None:
    text = "a && b"
    execution = new_execution("t", parse_definition(text), text, params={"x": "1"})
    assert Execution.from_json(execution.to_json()) == execution
