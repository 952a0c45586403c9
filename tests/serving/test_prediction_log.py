"""The prediction log: sampled inputs and outputs, with request id and model, on a destination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.cli.serve import _prediction_log
from conveyor.config import Settings
from conveyor.errors import ConveyorError
from conveyor.serving import resolve_model_uri
from conveyor.streams.binders import open_binder
from tests.serving.conftest import Serve, Trained
from tests.waiting import eventually


def _received(url: str, settings: Settings, want: int) -> list[dict[str, Any]]:
    binder = open_binder(url, settings)
    consumer = binder.consumer("predictions", "audit", name="test")
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        batch = consumer.receive(100, 0.1)
        if batch is not None:
            got.extend(m.payload for m in batch.messages)
            consumer.ack(batch)
        return len(got) >= want

    try:
        eventually(enough, what=f"{want} prediction records")
    finally:
        consumer.close()
        binder.close()
    return got


def test_answers_arrive_on_the_destination_with_their_request_id_and_model(
    serve: Serve, churn: Trained, settings: Settings, tmp_path: Path
) -> None:
    url = f"embedded://{tmp_path / 'bus' / 'log.db'}"
    resolved = resolve_model_uri(str(churn.path), settings)
    base = serve(resolved, prediction_log=_prediction_log("predictions", url, "on", "churn"))
    rows = [{"age": 41, "income": 52000.0}, {"age": 70, "income": 10000.0}]
    for n in range(3):
        answer = httpx.post(f"{base}/predict", json=rows, headers={"x-request-id": f"p-{n}"})
        assert answer.status_code == 200

    records = _received(url, settings, 3)
    assert sorted(r["request_id"] for r in records) == ["p-0", "p-1", "p-2"]
    first = records[0]
    assert first["digest"] == resolved.digest
    assert first["model"] == "churn"
    assert first["inputs"] == {"age": [41, 70], "income": [52000.0, 10000.0]}
    assert len(first["outputs"]["label"]) == 2


def test_an_unknown_binder_is_refused_before_serving() -> None:
    with pytest.raises(ConveyorError, match="gopher"):
        _prediction_log("predictions", "gopher://x", "on", "churn")
