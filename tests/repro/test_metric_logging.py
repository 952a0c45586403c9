"""Metrics logged under ``conveyor run``: none lost to threads, to a crash, or to an exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.repro.conftest import Cli

THREADS = """
import threading, conveyor

def train(name):
    for step in range(3000):
        conveyor.log_metric(name, float(step), step)

threads = [threading.Thread(target=train, args=(f"loss{i}",)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

#: Each child logs fewer steps than a batch, so only its exit writes them.
CHILDREN = """
import multiprocessing, conveyor

def train(i):
    for step in range(10):
        conveyor.log_metric(f"child{i}", float(step), step)

if __name__ == "__main__":
    conveyor.log_metric("parent", 1.0)
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=train, args=(i,)) for i in (0, 1)]
    for c in children:
        c.start()
    for c in children:
        c.join()
"""

#: Logs 2,500 steps, then dies as the argument says: an exception or SIGKILL.
DIES = """
import os, signal, sys, conveyor
for step in range(2500):
    conveyor.log_metric("loss", float(step), step)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
raise RuntimeError("diverged")
"""


def _shown(cli: Cli) -> dict[str, object]:
    run_id = json.loads(cli("runs", "--json").stdout)[0]["id"]
    shown: dict[str, object] = json.loads(
        cli("runs", "show", run_id, "--json", "--points", "5000").stdout
    )
    return shown


def _loss_steps(shown: dict[str, object]) -> list[int]:
    history = shown["metric_history"]
    assert isinstance(history, list)
    return [m["step"] for m in history if m["key"] == "loss"]


def test_metrics_from_several_threads_are_all_recorded(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", THREADS)
    cli("run", "--", "python", "train.py")

    run = json.loads(cli("runs", "--json").stdout)[0]
    assert run["status"] == "FINISHED"
    assert run["metrics"] == {f"loss{i}": 2999.0 for i in range(4)}
    shown = json.loads(cli("runs", "show", run["id"], "--json", "--points", "5000").stdout)
    for i in range(4):
        steps = [m["step"] for m in shown["metric_history"] if m["key"] == f"loss{i}"]
        assert steps == list(range(3000)), f"loss{i}"


def test_metrics_from_forked_multiprocessing_children_are_recorded(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", CHILDREN)
    cli("run", "--", "python", "train.py")

    run = json.loads(cli("runs", "--json").stdout)[0]
    assert run["metrics"] == {"parent": 1.0, "child0": 9.0, "child1": 9.0}


def test_an_exception_keeps_every_step_logged_before_it(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", DIES)
    failed = cli("run", "--", "python", "train.py", "raise", check=False)

    assert failed.returncode != 0
    shown = _shown(cli)
    assert shown["status"] == "FAILED"
    assert _loss_steps(shown) == list(range(2500))


def test_a_killed_script_keeps_the_steps_written_before_the_kill(
    cli: Cli, write: Callable[[str, str], Path]
) -> None:
    write("train.py", DIES)
    killed = cli("run", "--", "python", "train.py", "kill", check=False)

    assert killed.returncode != 0
    steps = _loss_steps(_shown(cli))
    # Lines are written 1,000 at a time (or every half second): at least 2,000 reached the
    # file before the kill, and what did is recorded whole, in order, without a gap.
    assert len(steps) >= 2000
    assert steps == list(range(len(steps)))
