"""Distributed engines for a step's heavy work: Dask (default install), Spark and Ray (extras).

Each function connects to the engine the step's parameters name, or starts a
local one, and records the engine, its version and its configuration in the
step's run (as ``batch.*`` parameters), so the run says where its work ran::

    import conveyor
    client = conveyor.batch.dask()        # LocalCluster, or --dask.scheduler=tcp://host:8786
    spark = conveyor.batch.spark()        # local[*], or --spark.master=spark://host:7077
    conveyor.batch.ray()                  # a local Ray, or --ray.address=ray://host:10001

A scheduler or master that does not answer is a :class:`BatchError` naming
it, after a bounded wait, not a hang.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from typing import Any

from conveyor.tasks.errors import TaskError

__all__ = ["BatchError", "dask", "ray", "spark"]

#: Seconds to wait for a remote scheduler or master before saying it does not answer.
CONNECT_TIMEOUT = 10.0


class BatchError(TaskError):
    """A distributed engine is missing, or its scheduler/master does not answer."""


def _params(prefix: str) -> dict[str, str]:
    given = json.loads(os.environ.get("CONVEYOR_PARAMS", "{}"))
    return {k[len(prefix) :]: str(v) for k, v in given.items() if k.startswith(prefix)}


def _record(engine: str, version: str, config: dict[str, Any]) -> None:
    """Put the engine into the current run (nothing to do outside a run)."""
    run_dir = os.environ.get("CONVEYOR_RUN_DIR")
    if not run_dir:
        return
    from conveyor.repro.journal import append_event

    for key, value in (("engine", engine), ("version", version), ("config", json.dumps(config))):
        append_event(run_dir, "param", key=f"batch.{key}", value=value)


def _missing(engine: str, extra: str, error: ImportError) -> BatchError:
    return BatchError(
        f"the {engine} engine is not installed ({error}); install it with "
        f"pip install 'conveyor[{extra}]'"
    )


def dask(scheduler: str | None = None, **cluster: Any) -> Any:
    """A ``distributed.Client``: to ``scheduler`` (or ``--dask.scheduler``), else a LocalCluster.

    ``cluster`` (or ``--dask.n_workers=2`` ...) configures the local cluster.
    """
    try:
        # Typed as Any: distributed's own annotations are partial.
        distributed: Any = importlib.import_module("distributed")
    except ImportError as error:
        raise _missing("Dask", "dask", error) from error
    params = _params("dask.")
    address = scheduler or params.pop("scheduler", None)
    if address:
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise BatchError(
                f"the Dask scheduler at {address} does not answer after {CONNECT_TIMEOUT:g} s "
                f"({error}); check --dask.scheduler"
            ) from error
        _record("dask", distributed.__version__, {"scheduler": address})
        return client
    options: dict[str, Any] = {"n_workers": 1, "threads_per_worker": 1, "processes": False}
    options.update({k: int(v) if v.isdigit() else v for k, v in params.items()})
    options.update(cluster)
    options["dashboard_address"] = None  # no fixed port: steps run side by side
    local = distributed.LocalCluster(**options)
    _record("dask", distributed.__version__, {"cluster": "LocalCluster", **options})
    return distributed.Client(local)


def spark(master: str | None = None, **conf: str) -> Any:
    """A ``SparkSession``: ``local[*]`` unless ``master`` (or ``--spark.master``) names one."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise BatchError(
            "Spark needs Java (17 or later) and none was found: put java on PATH or set JAVA_HOME"
        )
    try:
        import pyspark
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise _missing("Spark", "spark", error) from error
    params = _params("spark.")
    url = master or params.pop("master", None) or "local[*]"
    builder = SparkSession.builder.master(url).appName(os.environ.get("CONVEYOR_RUN_ID", "step"))
    settings = {**{f"spark.{k}": v for k, v in params.items()}, **conf}
    settings.setdefault("spark.ui.enabled", "false")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # py4j and Spark raise their own types
        raise BatchError(f"Spark at {url} could not start a session: {error}") from error
    _record("spark", pyspark.__version__, {"master": url, **settings})
    return session


def ray(address: str | None = None, **init: Any) -> Any:
    """Ray, initialised locally unless ``address`` (or ``--ray.address``) names a cluster."""
    try:
        import ray as ray_module
    except ImportError as error:
        raise _missing("Ray", "ray", error) from error
    params = _params("ray.")
    target = address or params.pop("address", None)
    options: dict[str, Any] = {"include_dashboard": False, **init}
    if target:
        options["address"] = target
    try:
        ray_module.init(**options)
    except Exception as error:  # Ray raises ConnectionError and its own types
        raise BatchError(f"Ray at {target or 'local'} could not start: {error}") from error
    _record("ray", ray_module.__version__, {"address": target or "local", **init})
    return ray_module
