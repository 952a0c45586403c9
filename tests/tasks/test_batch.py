"""conveyor.batch: a real Dask LocalCluster, a scheduler that does not answer, missing engines."""

from __future__ import annotations

import importlib.util
import socket

import pytest

import conveyor
from conveyor.tasks import batch
from conveyor.tasks.batch import BatchError


def test_a_local_dask_cluster_runs_work() -> None:
    client = conveyor.batch.dask()
    try:
        assert client.submit(sum, range(10)).result() == 45
    finally:
        client.close()


def test_a_dask_scheduler_that_does_not_answer_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(BatchError, match=rf"the Dask scheduler at tcp://127.0.0.1:{port} does not"):
        batch.dask(f"tcp://127.0.0.1:{port}")


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is not None, reason="Spark is installed")
def test_spark_without_its_extra_says_how_to_install_it() -> None:
    with pytest.raises(BatchError, match=r"conveyor\[spark\]"):
        batch.spark()


def test_spark_without_java_names_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BatchError, match="Spark needs Java"):
        batch.spark()


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_ray_without_its_extra_says_how_to_install_it() -> None:
    with pytest.raises(BatchError, match=r"conveyor\[ray\]"):
        batch.ray()
