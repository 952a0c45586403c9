"""The request log: a served answer's request id leads back to the model that gave it."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import httpx

from conveyor.config import Settings
from conveyor.serving import resolve_model_uri
from conveyor.serving.service import RequestLogOptions
from conveyor.store.requestlog import RequestLogWriter, find_request, oldest_record
from tests.serving.conftest import Serve, Trained
from tests.waiting import eventually

ROW = [{"age": 41, "income": 52000.0}]


def test_a_logged_request_id_names_the_model_digest_and_app(
    serve: Serve, churn: Trained, settings: Settings, tmp_path: Path
) -> None:
    resolved = resolve_model_uri(str(churn.path), settings)
    root = tmp_path / "requests"
    log = RequestLogOptions(folder=root / "churn", app="churn", revision=3)
    base = serve(resolved, request_log=log)

    given = httpx.post(f"{base}/predict", json=ROW, headers={"x-request-id": "client-id-1"})
    fresh = httpx.post(f"{base}/predict", json=ROW)
    assert given.status_code == fresh.status_code == 200
    assert given.headers["x-request-id"] == "client-id-1"

    for rid in ("client-id-1", fresh.headers["x-request-id"]):
        hit = eventually(partial(find_request, root, rid), what=f"{rid} in the log")
        assert hit.header["digest"] == resolved.digest == given.headers["x-model-digest"]
        assert (hit.header["app"], hit.header["revision"], hit.header["model"]) == (
            "churn",
            3,
            "churn",
        )
    assert find_request(root, "never-sent") is None


def test_without_the_setting_nothing_is_written(
    serve: Serve, churn: Trained, settings: Settings
) -> None:
    base = serve(churn.path, settings)
    assert httpx.post(f"{base}/predict", json=ROW).status_code == 200
    assert not settings.request_log_root.exists()


def test_files_rotate_and_every_id_is_still_found(tmp_path: Path) -> None:
    writer = RequestLogWriter(tmp_path / "app", {"app": "app"}, max_bytes=200)
    ids = [f"request-{n:04d}" for n in range(60)]
    for rid in ids:
        writer.record(rid)
        if rid.endswith("9"):
            writer.flush()
    writer.close()
    assert len(list((tmp_path / "app").glob("requests-*.log"))) > 1
    assert all(find_request(tmp_path, rid) is not None for rid in ids)


def test_files_past_the_retention_are_deleted_and_ignored(tmp_path: Path) -> None:
    now = [1_000_000.0]
    old = RequestLogWriter(tmp_path / "app", {}, retention=3600, clock=lambda: now[0])
    old.record("old-request")
    old.close()
    (path,) = (tmp_path / "app").glob("*.log")
    os.utime(path, (now[0], now[0]))
    assert find_request(tmp_path, "old-request", retention=3600, now=now[0] + 7200) is None
    assert oldest_record(tmp_path) == now[0]

    now[0] += 7200  # a new writer sweeps what ended before the retention window
    RequestLogWriter(tmp_path / "app", {}, retention=3600, clock=lambda: now[0]).close()
    assert not path.exists()


def test_a_sample_records_about_that_share(tmp_path: Path) -> None:
    writer = RequestLogWriter(tmp_path / "app", {}, sample=0.25)
    for n in range(4000):
        writer.record(f"r{n}")
    writer.close()
    found = sum(find_request(tmp_path, f"r{n}") is not None for n in range(0, 4000, 10))
    assert 50 < found < 150
