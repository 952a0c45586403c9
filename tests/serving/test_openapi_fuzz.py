"""Schema-driven fuzzing: schemathesis generates requests from /openapi.json; no answer is a 5xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.config import Settings
from conveyor.serving import ServeOptions, resolve_model_uri
from conveyor.serving.server import bind_sockets, run_in_thread

from .conftest import wait_ready

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A named-column classifier (int, float, string-free) served for the whole module."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.models.sklearn import save

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 100), "income": rng.normal(5e4, 1e4, 100)})
    est = LogisticRegression().fit(frame, np.where(frame["age"] > 50, "old", "young"))
    home: Path = tmp_path_factory.mktemp("fuzz")
    save(est, home / "fuzz.skops", frame)
    resolved = resolve_model_uri(
        str(home / "fuzz.skops"), Settings.from_env({"CONVEYOR_HOME": str(home)})
    )
    sock = bind_sockets("127.0.0.1", 0, 1)[0]
    _, stop = run_in_thread(resolved, ServeOptions(graceful_timeout=5), sock)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wait_ready(base)
    yield base
    stop()


def test_no_request_gets_a_server_error(base_url: str) -> None:
    # One hypothesis run per operation (schemathesis' own pytest plugin does the
    # same but relies on pytest internals that pytest 9 removed).
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    modes = list(schemathesis.GenerationMode)  # valid payloads and deliberately invalid ones
    for operation in operations:

        @given(case=st.one_of([operation.as_strategy(mode) for mode in modes]))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            if case.path.endswith(":explain"):
                # Documented as not offered: 501 for this model, 404 for another name.
                assert case.call(base_url=base_url).status_code in (404, 501)
                return
            case.call_and_validate(base_url=base_url, checks=[not_a_server_error])

        fuzz()
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'status="200"' in metrics  # the fuzz reached the model, not only the validators
    assert re.search(r'status="5(?!01)', metrics) is None
