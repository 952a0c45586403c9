"""Run a command and record everything its result depends on.

    record = execute(RunRequest(command=["python", "train.py"], cwd=Path.cwd()), settings)

The recorder snapshots the code, stores the declared inputs, starts the
command at once (so recording costs the user almost no wall time), opens the
registry and writes the RUNNING row while the command works, streams the
command's stdout/stderr to the terminal and to log files, and when it ends
reads the run journal (params, metrics, inputs, outputs, models, interpreter)
and finishes the row.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conveyor.config import Settings
from conveyor.errors import ConveyorError, RunError, UsageError
from conveyor.repro import environment
from conveyor.repro.checks import shared_output_warnings
from conveyor.repro.finish import capture_interpreter, finish_recorded_run, relative
from conveyor.repro.journal import read_events
from conveyor.repro.ledger import FolderLedger
from conveyor.repro.lifeline import die_with_recorder
from conveyor.repro.metric_feed import MetricFeed
from conveyor.repro.metric_journal import METRICS_NAME
from conveyor.repro.openlineage import Emitter
from conveyor.repro.run_events import emit_run_end, emit_run_start
from conveyor.repro.snapshot import CodeState, take_snapshot
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.blobs import BlobStore
from conveyor.store.files import private_dir
from conveyor.store.records import FileRecord, RunRecord, RunStatus

__all__ = [
    "BOOTSTRAP_DIR",
    "RunRequest",
    "child_env",
    "describe_invocation",
    "execute",
    "json_value",
    "new_run",
    "parse_params",
]

BOOTSTRAP_DIR = Path(__file__).parent / "bootstrap"


@dataclass
class RunRequest:
    """What to run and how; everything else is discovered."""

    command: list[str]
    cwd: Path
    params: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str | None = None
    seed: int | None = None
    threads: int | None = None
    #: Extra variables for the child (a reproduction passes the original's numeric settings).
    env: dict[str, str] = field(default_factory=dict)
    #: Folders put first on PATH (a reproduction's environment).
    path_prefix: list[str] = field(default_factory=list)
    #: Folders put on PYTHONPATH after the bootstrap.
    python_path: list[str] = field(default_factory=list)
    reproduces: str | None = None
    #: The experiment the run is grouped under (default: the name of its folder).
    experiment: str | None = None
    #: Copy the command's output to this process's stdout/stderr as it arrives.
    echo: bool = True
    #: The run this one is part of, for OpenLineage: {"run": id, "job": name} (a task step's).
    parent: dict[str, str] | None = None


def new_run_id() -> str:
    """A random 128-bit run id, as 32 hex digits (os.urandom: uuid costs an import)."""
    return os.urandom(16).hex()


def new_seed() -> int:
    """A random 32-bit run seed (fits PYTHONHASHSEED and NumPy's legacy seeding)."""
    return int.from_bytes(os.urandom(4), "big")


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["n=200", "lr=0.1"]`` -> dict; a malformed or repeated name is a UsageError."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {pair!r} is not NAME=VALUE")
        if name in params:
            raise UsageError(
                f"parameter {name!r} is given twice (--param {name}={params[name]} and "
                f"--param {pair}); give it once"
            )
        params[name] = value
    return params


def check_experiment(name: str) -> str:
    """The experiment name, stripped; UsageError if empty, too long or not printable."""
    text = name.strip()
    if not text or len(text) > 200 or not text.isprintable():
        raise UsageError(f"{name!r} is not an experiment name: 1 to 200 printable characters")
    return text


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class _Tee(threading.Thread):
    """Copies a child's pipe to a log file and, optionally, to our own stream."""

    def __init__(self, pipe: IO[bytes], log: Path, echo: IO[bytes] | None) -> None:
        super().__init__(daemon=True)
        self.pipe, self.log, self.echo = pipe, log, echo

    def run(self) -> None:
        fd = self.pipe.fileno()
        with self.log.open("ab") as out:
            while chunk := os.read(fd, 65536):
                out.write(chunk)
                out.flush()
                if self.echo is not None:
                    try:
                        self.echo.write(chunk)
                        self.echo.flush()
                    except (OSError, ValueError):
                        self.echo = None  # our terminal went away; keep logging
        self.pipe.close()


class _Registration(threading.Thread):
    """Does the recording work that can overlap the command.

    It opens the registry and writes the RUNNING row (signalling ``registered``),
    then, once the command's Python has announced itself in the journal, takes
    the package list, so none of this adds to the run's wall time; and every
    METRIC_INTERVAL it moves the metrics logged so far into the registry.
    """

    #: Seconds between two metric pumps while the command runs.
    METRIC_INTERVAL = 0.25

    def __init__(
        self, settings: Settings, record: RunRecord, run_dir: Path, store: BlobStore
    ) -> None:
        super().__init__(daemon=True)
        self.settings, self.record, self.run_dir, self.store = settings, record, run_dir, store
        self.registry: Any = None
        self.error: BaseException | None = None
        self.registered = threading.Event()
        self.command_ended = threading.Event()
        #: What capture_interpreter found for the command's interpreter, if it got that far.
        self.interpreter: dict[str, Any] | None = None
        self.metrics: MetricFeed | None = None

    def run(self) -> None:
        try:
            from conveyor.store.registry import Registry

            self.registry = Registry.from_settings(self.settings)
            self.registry.create_run(self.record)
        except BaseException as exc:
            self.error = exc
            return
        finally:
            self.registered.set()
        self.metrics = MetricFeed(self.registry, self.record.id, self.run_dir / METRICS_NAME)
        pumped = time.monotonic()
        while not self.command_ended.wait(0.05):
            if self.interpreter is None:
                event = next(
                    (e for e in read_events(self.run_dir) if e["type"] == "interpreter"), None
                )
                if event is not None:
                    self.interpreter = capture_interpreter(event, self.store)
            if time.monotonic() - pumped >= self.METRIC_INTERVAL:
                # A failed pump is repeated by the next one, and the last one reports.
                with contextlib.suppress(Exception):
                    self.metrics.pump()
                pumped = time.monotonic()


def child_env(
    request: RunRequest,
    run: RunRecord,
    run_dir: Path,
    settings: Settings,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The command's environment: ``base`` (default ours) plus what the run sets."""
    env = dict(os.environ if base is None else base)
    env.update(environment.pinned_thread_env(os.environ, request.threads))
    env.update(request.env)
    python_path = [str(BOOTSTRAP_DIR), *request.python_path]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    if request.path_prefix:
        env["PATH"] = os.pathsep.join([*request.path_prefix, env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(Path(request.path_prefix[0]).parent)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONHASHSEED": str(run.seed % 2**32),
            "PYTHONUNBUFFERED": "1",
            "CONVEYOR_RUN_ID": run.id,
            "CONVEYOR_RUN_DIR": str(run_dir),
            "CONVEYOR_RUN_SEED": str(run.seed),
            "CONVEYOR_PARAMS": json.dumps(request.params),
            "CONVEYOR_WATCH_ROOT": str(run.code.get("root") or request.cwd),
            "CONVEYOR_HOME": str(settings.home),
            "CONVEYOR_ARTIFACT_ROOT": settings.artifact_location,
            "CONVEYOR_DATABASE_URL": settings.database_url,
        }
    )
    return env


def describe_invocation(
    record: RunRecord, request: RunRequest, inputs: list[FileRecord], env: dict[str, str]
) -> dict[str, str]:
    """Put how the run was asked for, and the child's numeric variables, on ``record``."""
    record.environment["invocation"] = {
        "params": request.params,
        "inputs": [f.path for f in inputs],
        "outputs": list(request.outputs),
        "threads": request.threads,
    }
    record.params = {k: json_value(v) for k, v in request.params.items()}
    record.environment["variables"] = environment.recorded_env_variables(env)
    return env


def new_run(
    settings: Settings,
    store: BlobStore,
    *,
    cwd: Path,
    command: list[str],
    name: str,
    seed: int | None,
    threads: dict[str, str],
    started_at: float | None = None,
    code: CodeState | None = None,
    experiment: str | None = None,
) -> tuple[RunRecord, Path]:
    """Snapshot the code around ``cwd`` and describe a new RUNNING run; returns it and its folder.

    Shared by ``conveyor run``, by runs the Python API starts by itself (which
    pass the process's own ``started_at``) and by task steps (which pass the
    ``code`` their app was registered with).
    """
    if code is None:
        code = take_snapshot(
            cwd,
            store,
            limit=settings.snapshot_limit,
            known_outputs=lambda root: FolderLedger(settings.home, root).known_outputs(),
        )
    run_id = new_run_id()
    run_dir = settings.home / "runs" / run_id
    private_dir(run_dir)  # 0700: a run folder holds its logs and journal
    host = environment.host_facts()
    record = RunRecord(
        id=run_id,
        name=name,
        status=RunStatus.RUNNING,
        command=command,
        cwd=str(cwd),
        started_at=started_at if started_at is not None else time.time(),
        seed=seed if seed is not None else new_seed(),
        host=host["hostname"],
        pid=os.getpid(),
        code=code.to_json(),
        environment={"host": host, "threads": threads},
        experiment=check_experiment(experiment) if experiment is not None else cwd.name or "/",
    )
    return record, run_dir


def execute(request: RunRequest, settings: Settings) -> RunRecord:
    """Run ``request.command`` as a recorded run and return the finished record."""
    if not request.command:
        raise UsageError("no command to run; put it after --, e.g. conveyor run -- python train.py")
    cwd = request.cwd.resolve()
    store = ArtifactStore.from_settings(settings)

    inputs: list[FileRecord] = []
    for name in request.inputs:
        path = (cwd / name) if not Path(name).is_absolute() else Path(name)
        if not path.is_file():
            raise RunError(f"input {name} does not exist (looked for {path})")
        inputs.append(
            FileRecord("input", relative(path, cwd), store.put_file(path), path.stat().st_size)
        )

    record, run_dir = new_run(
        settings,
        store,
        cwd=cwd,
        command=list(request.command),
        name=request.name or Path(request.command[-1]).stem or request.command[0],
        seed=request.seed,
        threads=environment.pinned_thread_env(os.environ, request.threads),
        experiment=request.experiment,
    )
    env = describe_invocation(
        record, request, inputs, child_env(request, record, run_dir, settings)
    )
    record.reproduces = request.reproduces
    for item in record.code.get("skipped", []):
        sys.stderr.write(f"conveyor: not in the code snapshot: {item['path']} ({item['reason']})\n")
    ledger = FolderLedger(settings.home, Path(record.code.get("root") or cwd))
    declared = [str(p if p.is_absolute() else cwd / p) for p in map(Path, request.outputs)]
    for warning in shared_output_warnings(ledger, declared):
        sys.stderr.write(f"conveyor: warning: {warning}\n")
    ledger.started(record.id, record.started_at, pid=os.getpid(), run_dir=run_dir, outputs=declared)
    lineage = Emitter.from_settings(settings)
    emit_run_start(lineage, record, inputs, cwd, request.parent)

    registration = _Registration(settings, record, run_dir, store)
    # Signals are taken over before the command starts: a Ctrl-C that arrives while it
    # starts is passed on once it exists, and the run is still recorded as INTERRUPTED.
    interrupted = threading.Event()
    started = _Started()
    previous = _install_forwarding(started, interrupted)
    try:
        child = subprocess.Popen(
            request.command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Safe here: the command is started before any thread of ours exists, so
            # the forked child cannot inherit a lock another thread held.
            preexec_fn=die_with_recorder(),  # noqa: PLW1509
        )
    except OSError as exc:
        _restore_signals(previous)
        registration.start()
        registration.command_ended.set()
        registration.join()
        if registration.error is None:
            registration.registry.finish_run(
                record.id, RunStatus.FAILED, ended_at=time.time(), error=str(exc), exit_code=127
            )
        record.status, record.error, record.exit_code = RunStatus.FAILED, str(exc), 127
        emit_run_end(lineage, record, cwd, request.parent)
        raise RunError(f"cannot start {request.command[0]!r}: {exc.strerror}") from exc

    registration.start()
    assert child.stdout is not None
    assert child.stderr is not None
    tees = [
        _Tee(child.stdout, run_dir / "stdout.log", sys.stdout.buffer if request.echo else None),
        _Tee(child.stderr, run_dir / "stderr.log", sys.stderr.buffer if request.echo else None),
    ]
    for tee in tees:
        tee.start()

    started.attach(child)
    try:
        registration.registered.wait()
        if registration.error is not None:
            child.terminate()
            child.wait()
            err = registration.error
            raise (
                err if isinstance(err, ConveyorError) else RunError(f"cannot record the run: {err}")
            )
        returncode = child.wait()
        command_ended = time.time()
    finally:
        registration.command_ended.set()
        _restore_signals(previous)
        for tee in tees:
            tee.join()
        registration.join()

    registry = registration.registry
    try:
        finished = finish_recorded_run(
            record,
            returncode=returncode,
            interrupted=interrupted.is_set(),
            run_dir=run_dir,
            store=store,
            registry=registry,
            inputs=inputs,
            request=request,
            cwd=cwd,
            interpreter=registration.interpreter,
            ledger=ledger,
            command_ended=command_ended,
            input_limit=settings.snapshot_limit,
            metrics=registration.metrics,
        )
    finally:
        registry.close()
    emit_run_end(lineage, finished, cwd, request.parent)
    return finished


class _Started:
    """The command's process once it exists; signals that came before wait for it."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []

    def send(self, signum: int) -> None:
        if self.child is None:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signum)

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        for signum in self.pending:
            self.send(signum)


def _install_forwarding(started: _Started, interrupted: threading.Event) -> dict[int, Any]:
    """Pass SIGTERM/SIGHUP (and SIGINT when not from a terminal) on to the command."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    interactive = sys.stdin is not None and sys.stdin.isatty()

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            interrupted.set()
            if interactive:
                return  # the terminal sent Ctrl-C to the command's process group too
        started.send(signum)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    return previous


def _restore_signals(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
