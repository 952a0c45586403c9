"""The scoring service as a plain ASGI application: routing, limits, lineage headers, metrics.

No web framework sits on the hot path: a request is matched against a few
fixed paths, its body read within the size limit, handed to the protocol's
handler under the timeout, and answered with the lineage headers::

    x-request-id: 5f0c...            (the client's own id when it sent one)
    x-model-name: churn
    x-model-digest: blake3:ab12...
    x-model-run-id: 01J...           (when the run that trained it is known)

Anything wrong with a request becomes a 4xx with ``{"error": ...}``; an
unexpected failure becomes a 500 naming the request id, never a traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import conveyor
from conveyor.serving import openapi
from conveyor.serving.errors import RequestError
from conveyor.serving.http import Request, Response, dumps, json_response
from conveyor.serving.protocols import mlflow, oip, records, v1
from conveyor.serving.service import ServedModel

__all__ = ["ScoringApp"]

log = logging.getLogger("conveyor.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[ServedModel, Request], Awaitable[Response]]

_MAX_REQUEST_ID = 128


def _model_name_error(name: str, served: ServedModel) -> RequestError:
    return RequestError(
        f"unknown model {name!r}; this server serves {served.name!r}", status=404, kind="not_found"
    )


class ScoringApp:
    """ASGI app serving one model over every supported protocol."""

    def __init__(self, served: ServedModel, *, worker: int = 0) -> None:
        self.served = served
        self.options = served.options
        self.worker = str(worker)
        self.ready = True
        metrics = served.metrics
        name = served.name
        self._in_flight = metrics.in_flight.labels(name)
        self._worker_requests = metrics.worker_requests.labels(self.worker)
        self.count_connection = metrics.worker_connections.labels(self.worker).inc
        self._counters: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._errors: dict[str, Any] = {}
        self._lineage = [
            (b"x-model-name", name.encode()),
            (b"x-model-digest", served.resolved.digest.encode()),
        ]
        if served.resolved.run_id:
            self._lineage.append((b"x-model-run-id", served.resolved.run_id.encode()))
        self._id_prefix = uuid.uuid4().hex[:24]
        self._id_counter = itertools.count()
        self._openapi = dumps(openapi.openapi_document(served))
        self._docs = openapi.docs_page(served).encode()

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await self.served.batcher.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")
        if not request_id or len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable():
            # A random per-process prefix plus a counter: unique, and far cheaper
            # than a uuid4 (one getrandom system call) per request.
            request_id = f"{self._id_prefix}{next(self._id_counter):08x}"
        req = Request(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            request_id=request_id,
        )
        protocol = "other"
        self._in_flight.inc()
        try:
            handler, protocol = self._route(req)
            if handler is None:
                response = await self._simple(req)
            else:
                async with asyncio.timeout(self.options.timeout):
                    req.body = await self._read_body(req, receive)
                    response = await handler(self.served, req)
        except RequestError as exc:
            response = self._error(exc, req)
        except TimeoutError:
            response = self._error(
                RequestError(
                    f"the request took longer than the {self.options.timeout:g} s timeout",
                    status=504,
                    kind="timeout",
                ),
                req,
            )
        except Exception:
            log.exception("request %s %s failed (request id %s)", req.method, req.path, request_id)
            response = self._error(
                RequestError(
                    f"internal error; quote request id {request_id} when reporting it",
                    status=500,
                    kind="internal",
                ),
                req,
            )
        finally:
            self._in_flight.dec()
        await self._send(send, response, request_id)
        self._observe(protocol, response.status, time.perf_counter() - start)

    # -- pieces ----------------------------------------------------------------

    def _route(self, req: Request) -> tuple[Handler | None, str]:
        """The handler for a scoring POST, or (None, label) for everything answered by _simple."""
        path = req.path
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            self._check_model_path(path[len("/v2/models/") : -len("/infer")])
            self._method(req, "POST")
            return oip.infer, "v2"
        if path == "/invocations":
            self._method(req, "POST")
            return mlflow.invocations, "mlflow"
        if path == "/predict":
            self._method(req, "POST")
            return records.predict, "records"
        if path.startswith("/v1/models/") and path.endswith(":predict"):
            name = path[len("/v1/models/") : -len(":predict")]
            if name != self.served.name:
                raise _model_name_error(name, self.served)
            self._method(req, "POST")
            return v1.predict, "v1"
        return None, "v2" if path.startswith("/v2") else "other"

    def _check_model_path(self, rest: str) -> None:
        """``name`` or ``name/versions/v``: 404 for another model or version."""
        name, _, version_part = rest.partition("/versions/")
        if name != self.served.name:
            raise _model_name_error(name, self.served)
        if version_part and version_part != self.served.resolved.version:
            raise RequestError(
                f"model {name!r} has no version {version_part!r}; it has "
                f"{self.served.resolved.version!r}",
                status=404,
                kind="not_found",
            )

    @staticmethod
    def _method(req: Request, *allowed: str) -> None:
        if req.method not in allowed:
            raise RequestError(
                f"{req.method} is not allowed on {req.path}; use {', '.join(allowed)}",
                status=405,
                kind="method",
                headers={"allow": ", ".join(allowed)},
            )

    async def _simple(self, req: Request) -> Response:
        """Health, metadata, documentation and metrics: GET routes without a body."""
        path = req.path
        self._method(req, "GET", "HEAD")
        if path in ("/v2/health/live", "/ping", "/health"):
            return json_response({"live": True}) if path.startswith("/v2") else Response(body=b"\n")
        if path == "/v2/health/ready":
            if not self.ready:
                raise RequestError("shutting down", status=503, kind="unavailable")
            return json_response({"ready": True})
        if path == "/v2":
            return json_response(oip.server_metadata())
        if path.startswith("/v2/models/"):
            rest = path[len("/v2/models/") :]
            ready = rest.endswith("/ready")
            self._check_model_path(rest.removesuffix("/ready"))
            if ready:
                return json_response({"name": self.served.name, "ready": self.ready})
            return json_response(oip.model_metadata(self.served))
        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            if name != self.served.name:
                raise _model_name_error(name, self.served)
            return json_response({"name": name, "ready": self.ready})
        if path == "/version":
            return Response(body=conveyor.__version__.encode(), content_type="text/plain")
        if path == "/metrics":
            body, ctype = self.served.metrics.exposition()
            return Response(body=body, content_type=ctype)
        if path == "/openapi.json":
            return Response(body=self._openapi)
        if path in ("/docs", "/"):
            return Response(body=self._docs, content_type="text/html; charset=utf-8")
        raise RequestError(
            f"no route {path!r}; see /docs for the routes this service answers",
            status=404,
            kind="not_found",
        )

    async def _read_body(self, req: Request, receive: Receive) -> bytes:
        limit = self.options.max_body
        declared = req.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("the client disconnected", status=499, kind="disconnect")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(size, limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _error(self, exc: RequestError, req: Request) -> Response:
        self._count_error(exc.kind)
        headers = dict(exc.headers)
        if exc.status == 413:
            headers["connection"] = "close"
        return Response(status=exc.status, body=dumps(exc.body()), headers=headers)

    async def _send(self, send: Send, response: Response, request_id: str) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", request_id.encode()),
            *self._lineage,
            *((k.encode(), v.encode()) for k, v in response.headers.items()),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def _observe(self, protocol: str, status: int, seconds: float) -> None:
        key = (protocol, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self.served.metrics.requests.labels(self.served.name, protocol, str(status))
            self._counters[key] = counter
        counter.inc()
        latency = self._latency.get(protocol)
        if latency is None:
            latency = self.served.metrics.latency.labels(self.served.name, protocol)
            self._latency[protocol] = latency
        latency.observe(seconds)
        self._worker_requests.inc()

    def _count_error(self, kind: str) -> None:
        counter = self._errors.get(kind)
        if counter is None:
            counter = self.served.metrics.errors.labels(self.served.name, kind)
            self._errors[kind] = counter
        counter.inc()


def _too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        f"the request body ({size} bytes so far) exceeds the {limit}-byte limit; send fewer "
        "rows per request or raise --max-body",
        status=413,
        kind="too_large",
    )
