"""Plain records the registry reads and writes, and the run lifecycle."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import RunError

__all__ = [
    "ArtifactUse",
    "FileRecord",
    "MetricRecord",
    "ModelRecord",
    "RunRecord",
    "RunStatus",
    "human_duration",
]


class RunStatus(enum.StrEnum):
    """Where a run is in its life. Only RUNNING may change; the others are final."""

    #: The command is executing (or its recorder died without saying otherwise).
    RUNNING = "RUNNING"
    #: The command exited with status 0.
    FINISHED = "FINISHED"
    #: The command exited with a non-zero status.
    FAILED = "FAILED"
    #: The command was ended by a signal (SIGTERM, SIGKILL, ...) it did not ask for.
    KILLED = "KILLED"
    #: The user pressed Ctrl-C (SIGINT) and the run stopped.
    INTERRUPTED = "INTERRUPTED"

    @property
    def final(self) -> bool:
        return self is not RunStatus.RUNNING

    def check_transition(self, new: RunStatus, run_id: str) -> None:
        """Raise RunError unless moving from self to new is legal."""
        if self.final:
            raise RunError(
                f"run {run_id} is already {self.value}; a finished run is immutable "
                f"and cannot become {new.value}"
            )


@dataclass(frozen=True)
class MetricRecord:
    key: str
    value: float
    step: int | None
    timestamp: float


@dataclass(frozen=True)
class FileRecord:
    role: str  # "input" | "output"
    path: str  # as the run named it, relative to the run's working directory when inside it
    digest: str
    size: int


@dataclass(frozen=True)
class ModelRecord:
    run_id: str
    name: str
    path: str
    format: str
    digest: str
    signature: dict[str, Any] | None
    #: The exact types its skops file needs, recorded by conveyor.save_model when it wrote
    #: the file: loaded through the registry (digest verified) they are trusted.
    trusted_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArtifactUse:
    """One run's use of an artifact: what the artifact is to the run, and where it came from."""

    run_id: str
    digest: str
    #: "snapshot", "code", "diff", "input", "output", "model", "stdout", "stderr" or
    #: "environment"
    role: str
    #: The file (or, for a snapshot, the folder) the content was stored from, when known:
    #: where an intact copy may still be found.
    path: str | None = None


@dataclass
class RunRecord:
    """Everything recorded about one run."""

    id: str
    name: str
    status: RunStatus
    command: list[str]
    cwd: str
    started_at: float
    seed: int
    host: str
    code: dict[str, Any]
    environment: dict[str, Any]
    pid: int | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    stdout_digest: str | None = None
    stderr_digest: str | None = None
    reproduces: str | None = None
    error: str | None = None
    #: The experiment the run belongs to (``conveyor run --experiment``; default its folder).
    experiment: str | None = None
    #: When it was deleted (hidden from listings until restored or purged by ``artifacts gc``).
    deleted_at: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[MetricRecord] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    models: list[ModelRecord] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    def latest_metrics(self) -> dict[str, float]:
        """The last value logged for each metric key."""
        latest: dict[str, float] = {}
        for m in sorted(self.metrics, key=lambda m: (m.step or 0, m.timestamp)):
            latest[m.key] = m.value
        return latest

    def outputs(self) -> list[FileRecord]:
        return [f for f in self.files if f.role == "output"]

    def inputs(self) -> list[FileRecord]:
        return [f for f in self.files if f.role == "input"]


def human_duration(seconds: float | None) -> str:
    """A duration as the CLI and the dashboard show it: ``2.31s``, ``4m05s``, ``1h07m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
