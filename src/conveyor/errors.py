"""Conveyor's exception tree: every error a user can cause derives from ConveyorError.

Classes defined elsewhere name their module in brackets; a test keeps this
drawing complete (every exception class in the package, under its real parent).

    ConveyorError
    ├── ConfigError             a setting in the environment is malformed or unusable
    ├── NotFoundError           an id, name or digest that does not exist
    ├── UsageError              the request itself is wrong (a parameter given twice, ...)
    │   ├── SearchError         [store.search] a run search is malformed (position, caret)
    │   └── RequestError        [serving.errors] a request the scoring service refuses (status)
    │       └── InvalidInput    inputs that do not match the model's signature, field by field
    ├── StoreError
    │   ├── IntegrityError      an artifact's bytes no longer match its digest
    │   ├── RegistryUnavailable the database URL does not answer
    │   └── Stale               [store.checkpoints] a numbered page's checkpoints need building
    ├── RunError                a run could not be started or recorded
    │   └── SnapshotTooLarge    the working tree exceeds the snapshot limit
    ├── EnvironmentBuildError   a reproduction environment could not be created
    ├── ModelError              a model cannot be saved, loaded or scored
    │   ├── UntrustedModelError loading would execute code from an untrusted file
    │   └── InvalidInputError   [models.pmml.errors] input the PMML document declares invalid
    │                           (also a ValueError)
    ├── PlatformError           [platform.errors] the supervisor or router cannot do what was asked
    │   ├── IllegalTransition   an instance asked to move between unconnected states
    │   ├── SpawnError          an instance's command could not be started
    │   │   └── IsolationUnavailable [platform.isolation] no sandbox works here, none opted out
    │   ├── StagingError        an app's requirements could not be resolved or installed
    │   ├── ManifestError       conveyor.yml is malformed (file, line, column and field)
    │   ├── ClusterError        a Kubernetes cluster cannot be reached or refused an action
    │   ├── DeployError         [platform.controller] a new revision never became healthy
    │   └── ImageError          an image could not be built or a registry refused it
    ├── StreamError             [streams.errors] a stream cannot be defined, wired or run
    │   ├── DslError            a definition is malformed (code, position, caret, expected)
    │   ├── OptionError         [streams.catalogue] an app option is unknown, missing or mistyped
    │   ├── ExpressionError     a filter/transform/router expression is not allowed or fails
    │   │   └── OverLimit       [streams.bounds] a value or the work would pass the limits
    │   ├── PathNotAllowed      [streams.paths] a file or database path outside the allowed roots
    │   ├── Refused             [streams.apps.httpsource] a request the http source refuses
    │   ├── PayloadError        an app produced a payload that is not JSON-compatible
    │   └── BinderError         a broker cannot be reached or refused an operation
    ├── TaskError               [tasks.errors] a composed task cannot be defined, run or changed
    │   ├── TaskDslError        a definition is malformed (SCDF code, position, caret, expected)
    │   ├── CronError           [tasks.cron] a cron expression or time zone that cannot be used
    │   ├── BatchError          [tasks.batch] a Dask/Spark/Ray engine missing or not answering
    │   └── IllegalTaskTransition [tasks.states] a step or execution asked for an undrawn move
    ├── ApiError                [cli.client] the platform refused a request and said why
    └── PlatformNotRunning      [cli.client] nothing answers at the platform's API address

Exceptions private to one module (a leading underscore) never reach a user and
are not drawn. The CLI prints ``str(error)`` and exits with ``error.exit_code``;
no traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConveyorError",
    "EnvironmentBuildError",
    "IntegrityError",
    "ModelError",
    "NotFoundError",
    "RegistryUnavailable",
    "RunError",
    "SnapshotTooLarge",
    "StoreError",
    "UntrustedModelError",
    "UsageError",
    "point_at",
]


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ConfigError(ConveyorError):
    exit_code = 2


class UsageError(ConveyorError):
    exit_code = 2


class NotFoundError(ConveyorError):
    pass


class StoreError(ConveyorError):
    pass


class IntegrityError(StoreError):
    pass


class RegistryUnavailable(StoreError):
    pass


class RunError(ConveyorError):
    pass


class SnapshotTooLarge(RunError):
    pass


class EnvironmentBuildError(ConveyorError):
    pass


class ModelError(ConveyorError):
    pass


class UntrustedModelError(ModelError):
    pass


def point_at(text: str, position: int) -> str:
    """Show the line of ``text`` holding ``position`` with a caret under it (for DSL errors).

    >>> print(point_at("a & b", 2))
      a & b
        ^
    """
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : end if end != -1 else len(text)]
    column = position - start
    if column > 60:  # keep the caret line readable for long definitions
        cut = column - 40
        line, column = "..." + line[cut:], column - cut + 3
    line = line[: column + 40] + ("..." if len(line) > column + 40 else "")
    # Tabs keep their width so the caret lines up under the same character.
    pad = "".join("\t" if ch == "\t" else " " for ch in line[:column])
    return f"  {line}\n  {pad}^"
