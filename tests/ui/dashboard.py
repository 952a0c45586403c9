"""What the dashboard tests share: a platform with recorded runs, and a logged-in HTTP client."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from typing import Any

import httpx

from conveyor.store.records import FileRecord, MetricRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry
from tests.platform.control import Platform

XSS = "<script>alert(1)</script>"


def record_run(
    platform: Platform,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, list[float]],
    *,
    status: RunStatus = RunStatus.FINISHED,
    started_at: float | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
    code: dict[str, Any] | None = None,
    files: list[FileRecord] | None = None,
    environment: dict[str, Any] | None = None,
    reproduces: str | None = None,
) -> str:
    """A run in the platform's registry, as `conveyor run` would have left it (or is running)."""
    run_id = uuid.uuid4().hex
    started = time.time() if started_at is None else started_at
    with Registry.from_settings(platform.settings) as registry:
        registry.create_run(
            RunRecord(
                id=run_id,
                name=name,
                status=RunStatus.RUNNING,
                command=["python", "train.py"],
                cwd=str(platform.project),
                started_at=started,
                seed=42,
                host="test-host",
                code=code or {"commit": "0123456789abcdef", "branch": "main", "dirty": False},
                environment=environment or {"python": "3.11"},
                params=params,
                reproduces=reproduces,
                experiment=experiment,
            )
        )
        if tags:
            registry.set_tags(run_id, tags)
        if files:
            registry.add_files(run_id, files)
        registry.add_metrics(
            run_id,
            [
                MetricRecord(key, value, step, started + step)
                for key, values in metrics.items()
                for step, value in enumerate(values)
            ],
        )
        if status is not RunStatus.RUNNING:
            registry.finish_run(
                run_id,
                status,
                ended_at=started + 3.5,
                exit_code=0 if status is RunStatus.FINISHED else 1,
            )
    return run_id


def tiny_png() -> bytes:
    """A 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0\xff\0\0")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def api_url(platform: Platform) -> str:
    return str(platform.client.call("GET", "/v1/info")["api"])


def token(platform: Platform) -> str:
    return (platform.settings.platform_dir / "token").read_text().strip()


def logged_in(platform: Platform) -> httpx.Client:
    """An HTTP client holding a dashboard session."""
    client = httpx.Client(base_url=api_url(platform), timeout=60)
    answer = client.post("/ui/login", data={"token": token(platform)})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


SIGNATURE_1 = {
    "inputs": [{"name": "age", "dtype": "int64", "shape": []}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": []}],
    "task": "classification",
}
SIGNATURE_2 = {
    "inputs": [
        {"name": "age", "dtype": "float64", "shape": []},
        {"name": "sex", "dtype": "object", "shape": []},
    ],
    "outputs": [{"name": "label", "dtype": "int64", "shape": []}],
    "task": "classification",
}


def registered_model(platform: Platform, name: str, *, description: str = "") -> list[str]:
    """Two training runs (reading data a prep run wrote), each saving a model registered as a
    version of ``name`` (their signatures differ); alias champion at 1. Returns the run ids:
    prep, then the trainers of versions 1 and 2."""
    from conveyor.repro.registered import move_alias, register_run_model
    from conveyor.store.models import ModelRepository
    from conveyor.store.records import ModelRecord

    prep = record_run(platform, f"{name}-prep", {}, {})
    data = "blake3:" + uuid.uuid4().hex * 2
    trainers = [record_run(platform, f"{name}-train-{n}", {"n": n}, {}) for n in (1, 2)]
    with Registry.from_settings(platform.settings) as registry:
        registry.add_files(prep, [FileRecord("output", "train.csv", data, 9)])
        for run_id, signature in zip(trainers, (SIGNATURE_1, SIGNATURE_2), strict=True):
            registry.add_files(run_id, [FileRecord("input", "train.csv", data, 9)])
            digest = "blake3:" + uuid.uuid4().hex * 2
            registry.add_model(
                ModelRecord(run_id, "model", "model.skops", "sklearn", digest, signature)
            )
            register_run_model(registry, f"run:{run_id}/model", name)
        move_alias(registry, name, "champion", 1)
        ModelRepository(registry).update_model(
            name, description=description, set_tags={"team": description or "risk"}
        )
    return [prep, *trainers]
