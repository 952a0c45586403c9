"""Conveyor's Python API.

Inside ``conveyor run`` these calls record into the run; outside it, the first
call starts a run of the current script that is finished when Python exits.

>>> import conveyor
>>> n = conveyor.param("n_estimators", 100)      # doctest: +SKIP
>>> conveyor.log_metric("auc", 0.93)              # doctest: +SKIP

Importing this package is cheap: the implementation loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor._version import __version__

__all__ = [
    "__version__",
    "batch",
    "exit_status",
    "input",
    "log_metric",
    "log_metrics",
    "output",
    "param",
    "run_id",
    "save_model",
    "seed",
]

if TYPE_CHECKING:
    from conveyor.api import (
        batch,
        exit_status,
        input,
        log_metric,
        log_metrics,
        output,
        param,
        run_id,
        save_model,
        seed,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from conveyor import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this hook: log_metric runs per step
        return value
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
