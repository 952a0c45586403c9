"""A run started by the Python API itself, for scripts not launched by ``conveyor run``.

The first ``conveyor.param``/``log_metric``/... call in a plain ``python
train.py`` records a run of that script: code snapshot, seed (drawn, recorded
and applied to ``random`` and NumPy from that point on), interpreter and
packages. The run is finished when the interpreter exits: FINISHED, or
FAILED when an exception escaped.
"""

from __future__ import annotations

import atexit
import os
import random
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from conveyor.config import get_settings
from conveyor.repro import environment
from conveyor.repro.checks import warnings_of
from conveyor.repro.finish import finish_recorded_run
from conveyor.repro.journal import append_event
from conveyor.repro.ledger import FolderLedger
from conveyor.repro.metric_journal import flush_metrics
from conveyor.repro.recorder import RunRequest, new_run
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.registry import Registry

__all__ = ["start_local_run"]

_lock = threading.Lock()
#: Set when an exception escapes the script (the run is then recorded as FAILED).
_failure = threading.Event()


def _note_failure(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    _failure.set()
    _previous_hook(kind, value, tb)


_previous_hook = sys.excepthook


def process_start_time() -> float | None:
    """When this process started (wall clock), from /proc; None where there is no /proc.

    A run the API starts by itself begins at the script's first API call, but
    the script has been working since the interpreter started.
    """
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        # Field 22 (starttime, in clock ticks since boot) counted after the ")" that
        # ends field 2 (the command name may itself hold spaces and parentheses).
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        hertz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / hertz)


def start_local_run() -> str:
    """Start recording the current process as a run; returns its run folder."""
    with _lock:
        current = os.environ.get("CONVEYOR_RUN_DIR")
        if current:
            return current
        settings = get_settings()
        store = ArtifactStore.from_settings(settings)
        cwd = Path.cwd()
        script = sys.argv[0] if sys.argv and sys.argv[0] else "python"
        record, run_dir = new_run(
            settings,
            store,
            cwd=cwd,
            command=[sys.executable, *sys.argv],
            name=Path(script).stem or "python",
            seed=None,
            threads=environment.pinned_thread_env(os.environ, None),
            started_at=process_start_time(),
        )
        record.environment["variables"] = environment.recorded_env_variables(os.environ)
        record.environment["started_outside_conveyor_run"] = True
        run_id, seed = record.id, record.seed
        registry = Registry.from_settings(settings)
        registry.create_run(record)
        os.environ.update(
            CONVEYOR_RUN_ID=run_id, CONVEYOR_RUN_DIR=str(run_dir), CONVEYOR_RUN_SEED=str(seed)
        )
        random.seed(seed)
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed(seed % 2**32)
        facts = environment.interpreter_facts()
        append_event(
            run_dir,
            "interpreter",
            executable=facts["executable"],
            python=facts["python"],
            implementation=facts["implementation"],
            prefix=facts["prefix"],
            path=facts["path"],
        )
        sys.excepthook = _note_failure

        ledger = FolderLedger(settings.home, Path(record.code.get("root") or cwd))
        ledger.started(run_id, record.started_at, pid=os.getpid(), run_dir=run_dir, outputs=[])

        def finish() -> None:
            flush_metrics()  # registered before this, so atexit would write them after
            finished = finish_recorded_run(
                record,
                returncode=1 if _failure.is_set() else 0,
                interrupted=False,
                run_dir=run_dir,
                store=store,
                registry=registry,
                inputs=[],
                request=RunRequest(command=record.command, cwd=cwd),
                cwd=cwd,
                ledger=ledger,
                input_limit=settings.snapshot_limit,
            )
            registry.close()
            sys.stderr.write(f"conveyor: recorded run {run_id[:12]}\n")
            for line in warnings_of(finished):
                sys.stderr.write(f"conveyor: warning: {line}\n")

        atexit.register(finish)
        return str(run_dir)
