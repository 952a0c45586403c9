"""A stream app's status endpoint, for the platform's health check and ``stream info``.

Served on ``$PORT`` (loopback) by every app except the http source, which
answers ``/health`` on its own port:

- ``GET /health`` — 200 ``{"status": "ok"}`` while the app runs, 503 otherwise;
- ``GET /status`` — the app's names, destinations, state and message counters;
- ``GET /metrics`` — the counters in Prometheus text format.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from conveyor.streams.runtime import AppState, StreamAppRuntime

__all__ = ["StatusServer", "metrics_of", "status_of"]

_COUNTERS = (
    ("received", "conveyor_stream_messages_received_total", "Messages received from the input."),
    ("published", "conveyor_stream_messages_published_total", "Messages published."),
    ("dead_lettered", "conveyor_stream_messages_dead_lettered_total", "Messages sent to the DLQ."),
)


def status_of(runtime: StreamAppRuntime) -> dict[str, Any]:
    spec = runtime.spec
    return {
        "stream": spec.stream_name,
        "label": spec.app_label,
        "app": spec.app,
        "role": runtime.role.value,
        "instance": spec.instance_index,
        "input": runtime.input_destination,
        "output": spec.output,
        "group": spec.consumer_group,
        "binder": runtime.binder.kind,
        "state": runtime.state.value,
        "received": runtime.received,
        "published": runtime.published,
        "dead_lettered": runtime.dead,
        "counted_since": runtime.started_at,
    }


def _escape(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_of(runtime: StreamAppRuntime) -> str:
    """The counters in Prometheus text exposition format."""
    status = status_of(runtime)
    labels = ",".join(
        f'{k}="{_escape(str(status[k]))}"' for k in ("stream", "label", "app", "instance")
    )
    lines: list[str] = []
    for key, name, help_text in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines.append(f"{name}{{{labels}}} {status[key]}")
    return "\n".join(lines) + "\n"


class StatusServer:
    """Serves /health, /status and /metrics for one runtime on a background thread."""

    def __init__(self, runtime: StreamAppRuntime, port: int, host: str = "127.0.0.1") -> None:
        self.runtime = runtime
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        runtime = self.runtime

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # health probes every few seconds would drown the app's log

            def do_GET(self) -> None:
                if self.path == "/health":
                    ok = runtime.state is AppState.RUNNING
                    status, body = (200 if ok else 503), {"status": runtime.state.value}
                elif self.path == "/status":
                    status, body = 200, status_of(runtime)
                elif self.path == "/metrics":
                    self.send(200, metrics_of(runtime).encode(), "text/plain; version=0.0.4")
                    return
                else:
                    status, body = 404, {"error": "GET /health, /status or /metrics"}
                self.send(status, orjson.dumps(body), "application/json")

            def send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
