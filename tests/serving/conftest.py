"""Fixtures: real models saved to disk and a real server on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from conveyor.config import Settings
from conveyor.models.sklearn import save
from conveyor.serving import ResolvedModel, ServeOptions, resolve_model_uri
from conveyor.serving.server import bind_sockets, run_in_thread
from tests.waiting import poll

TREE = "sklearn.tree._tree.Tree"
READY_DEADLINE = 30.0


@dataclass
class Trained:
    """A model file and the estimator it was saved from, to compare predictions with."""

    path: Path
    estimator: Any
    x: Any


@pytest.fixture(scope="session")
def gbc(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """GradientBoostingClassifier on 20 unnamed features (signature: one tensor field x[20])."""
    x, y = make_classification(n_samples=300, n_features=20, random_state=0)
    est = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    path = tmp_path_factory.mktemp("models") / "gbc.skops"
    save(est, path)
    return Trained(path, est, x)


@pytest.fixture(scope="session")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """LogisticRegression on named columns (int, float), string class labels."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"age": rng.integers(18, 90, 200), "income": rng.normal(50_000, 15_000, 200)}
    )
    y = np.where(frame["income"] + 300 * frame["age"] > 62_000, "stays", "leaves")
    est = LogisticRegression(max_iter=1000).fit(frame, y)
    path = tmp_path_factory.mktemp("models") / "churn.skops"
    save(est, path, frame)
    return Trained(path, est, frame)


@pytest.fixture
def trusting(settings: Settings) -> Settings:
    """Settings whose operator trusts sklearn's Tree type (needed by tree ensembles)."""
    return Settings.from_env({"CONVEYOR_HOME": str(settings.home), "CONVEYOR_TRUSTED_TYPES": TREE})


def wait_ready(base: str, deadline: float = READY_DEADLINE) -> None:
    """Poll /v2/health/ready until it answers 200, failing after ``deadline`` seconds."""
    last: object = None

    def ready() -> bool:
        nonlocal last
        try:
            return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
        except httpx.TransportError as exc:
            last = exc
            return False

    if poll(ready, timeout=deadline, interval=0.02):
        return
    raise AssertionError(f"server at {base} not ready within {deadline} s ({last})")


Serve = Callable[..., str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a server for a resolved model (or a URI) and return its base URL."""
    stops: list[Callable[[], None]] = []

    def start(
        model: ResolvedModel | str | Path,
        settings: Settings | None = None,
        *,
        trusted: bool = False,
        **options: Any,
    ) -> str:
        if not isinstance(model, ResolvedModel):
            assert settings is not None
            model = resolve_model_uri(str(model), settings, trusted=trusted)
        opts = ServeOptions(port=0, graceful_timeout=5, **options)
        sock = bind_sockets("127.0.0.1", 0, 1)[0]
        port = sock.getsockname()[1]
        _, stop = run_in_thread(model, opts, sock)
        stops.append(stop)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        return base

    yield start
    for stop in stops:
        stop()
