"""Prometheus metrics of the scoring service, per model, exposed at ``/metrics``.

With several worker processes, ``prometheus_client`` runs in multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR`` is set by the server before the first
import), so a scrape sees the sum over every worker whichever one answers;
``conveyor_worker_requests_total`` keeps a ``worker`` label to show how the
load spread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass
class ServiceMetrics:
    """The service's metric families, registered in their own registry."""

    registry: Any
    requests: Any
    latency: Any
    in_flight: Any
    batch_rows: Any
    batch_requests: Any
    errors: Any
    ignored_fields: Any
    worker_requests: Any
    worker_connections: Any
    multiprocess_dir: str | None

    @classmethod
    def create(cls) -> ServiceMetrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry(auto_describe=True)
        mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        return cls(
            registry=registry,
            requests=Counter(
                "conveyor_requests",
                "Requests answered, by model, protocol and HTTP status.",
                ["model", "protocol", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "conveyor_request_duration_seconds",
                "Time from request start to response, by model and protocol.",
                ["model", "protocol"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge(
                "conveyor_requests_in_flight",
                "Requests being processed now.",
                ["model"],
                registry=registry,
                multiprocess_mode="livesum",
            ),
            batch_rows=Histogram(
                "conveyor_batch_rows",
                "Rows per predict call after adaptive batching.",
                ["model"],
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            batch_requests=Histogram(
                "conveyor_batch_requests",
                "Requests merged into one predict call.",
                ["model"],
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            errors=Counter(
                "conveyor_errors",
                "Requests refused or failed, by model and kind of error.",
                ["model", "kind"],
                registry=registry,
            ),
            ignored_fields=Counter(
                "conveyor_ignored_fields",
                "Fields sent that the model does not take, left out (see x-ignored-fields).",
                ["model"],
                registry=registry,
            ),
            worker_requests=Counter(
                "conveyor_worker_requests",
                "Requests answered by each worker process.",
                ["worker"],
                registry=registry,
            ),
            worker_connections=Counter(
                "conveyor_worker_connections",
                "Connections each worker process has served.",
                ["worker"],
                registry=registry,
            ),
            multiprocess_dir=mp_dir,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every metric (summed over workers) and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
