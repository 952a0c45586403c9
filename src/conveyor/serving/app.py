"""The scoring service: routing, limits, lineage headers and metrics for one served model.

No web framework sits on the hot path: the server (:mod:`conveyor.serving.wire`)
hands over each parsed request, it is matched against a few fixed paths,
given to its protocol's handler, scored by the batcher, and answered with
the lineage headers::

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
from collections.abc import Callable
from functools import partial
from typing import Any

from conveyor._version import __version__
from conveyor.serving import openapi
from conveyor.serving.errors import RequestError
from conveyor.serving.http import Request, Response, discard_reply, dumps, json_response
from conveyor.serving.protocols import mlflow, oip, records, v1
from conveyor.serving.service import Scoring, ServedModel

__all__ = ["ScoringApp"]

log = logging.getLogger("conveyor.serving")

Handler = Callable[[ServedModel, Request], Scoring]

_MAX_REQUEST_ID = 128
_REFUSAL_KINDS = {
    400: "bad_request",
    408: "timeout",
    413: "too_large",
    431: "too_large",
}


def _model_name_error(name: str, served: ServedModel) -> RequestError:
    return RequestError(
        f"unknown model {name!r}; this server serves {served.name!r}", status=404, kind="not_found"
    )


class ScoringApp:
    """Answers requests for one model over every supported protocol."""

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
        #: Requests answered since the last flush, by (protocol, status).
        self._tally: dict[tuple[str, int], int] = {}
        self._in_flight_now = 0
        self._flush_due = False
        self._latency: dict[str, Any] = {}
        self._errors: dict[str, Any] = {}
        lineage = [
            (b"x-model-name", name.encode()),
            (b"x-model-digest", served.resolved.digest.encode()),
        ]
        if served.resolved.run_id:
            lineage.append((b"x-model-run-id", served.resolved.run_id.encode()))
        #: The lineage headers, ready to go into every answer's head.
        self.lineage_head = b"".join(b"%s: %s\r\n" % pair for pair in lineage)
        self._id_prefix = uuid.uuid4().hex[:24]
        self._id_counter = itertools.count()
        self._openapi = dumps(openapi.openapi_document(served))
        self._docs = openapi.docs_page(served).encode()

    # -- what the server calls ----------------------------------------------------

    def handle(self, req: Request) -> None:
        """Answer ``req`` through ``req.reply``: at once, or when the batcher has scored it."""
        self._identify(req)
        self._in_flight_now += 1
        if not self._flush_due:
            self._flush_later()
        protocol = "other"
        try:
            handler, protocol = self._route(req)
            req.protocol = protocol
            if handler is None:
                self._answer(req, self._simple(req), protocol)
                return
            scoring = handler(self.served, req)
            scored = self.served.submit(scoring.columns)
        except Exception as exc:
            self._answer(req, self._failure(exc, req), protocol)
            return
        scored.add_done_callback(partial(self._scored, req, scoring, protocol))

    def expire(self, req: Request) -> None:
        """``req`` ran out of time: answer 504 now (its scoring, when it ends, is dropped)."""
        error = RequestError(
            f"the request took longer than the {self.options.timeout:g} s timeout",
            status=504,
            kind="timeout",
        )
        self._answer(req, self._error(error), req.protocol)

    def abandon(self, req: Request) -> None:
        """The client of ``req`` left before its answer: count it (499); drop the answer."""
        req.reply = discard_reply
        error = RequestError("the client closed the connection", status=499, kind="disconnect")
        self._answer(req, self._error(error), req.protocol)

    def refusal(self, req: Request, status: int, message: str) -> Response:
        """The answer to a request the server refused while reading it (413, 400, ...)."""
        self._identify(req)
        response = self._error(
            RequestError(message, status=status, kind=_REFUSAL_KINDS.get(status, "bad_request"))
        )
        self._observe("other", status, 0.0)
        return response

    def too_large(self, size: int) -> str:
        return (
            f"the request body ({size} bytes so far) exceeds the {self.options.max_body}-byte "
            "limit; send fewer rows per request or raise --max-body"
        )

    async def close(self) -> None:
        """Stop answering ready; finish the queued predict calls."""
        self.ready = False
        await self.served.batcher.close()
        self.flush_metrics()

    # -- answering ----------------------------------------------------------------

    def _identify(self, req: Request) -> None:
        request_id = req.headers.get("x-request-id", "")
        if not request_id or len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable():
            # A random per-process prefix plus a counter: unique, and far cheaper
            # than a uuid4 (one getrandom system call) per request.
            request_id = f"{self._id_prefix}{next(self._id_counter):08x}"
        req.request_id = request_id

    def _scored(
        self,
        req: Request,
        scoring: Scoring,
        protocol: str,
        scored: asyncio.Future[dict[str, Any]],
    ) -> None:
        if req.answered:  # timed out, or the client left
            return
        try:
            response = scoring.answer(self.served.outputs(scored))
        except Exception as exc:
            response = self._failure(exc, req)
        self._answer(req, response, protocol)

    def _answer(self, req: Request, response: Response, protocol: str) -> None:
        req.answered = True
        self._in_flight_now -= 1
        self._observe(protocol, response.status, time.perf_counter() - req.started)
        req.reply(req, response)

    def _failure(self, exc: Exception, req: Request) -> Response:
        if isinstance(exc, RequestError):
            return self._error(exc)
        log.exception("request %s %s failed (request id %s)", req.method, req.path, req.request_id)
        return self._error(
            RequestError(
                f"internal error; quote request id {req.request_id} when reporting it",
                status=500,
                kind="internal",
            )
        )

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

    def _simple(self, req: Request) -> Response:
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
            return Response(body=__version__.encode(), content_type="text/plain")
        if path == "/metrics":
            self.flush_metrics()
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

    def _error(self, exc: RequestError) -> Response:
        self._count_error(exc.kind)
        return Response(status=exc.status, body=dumps(exc.body()), headers=dict(exc.headers))

    def _observe(self, protocol: str, status: int, seconds: float) -> None:
        key = (protocol, status)
        tally = self._tally
        tally[key] = tally.get(key, 0) + 1
        latency = self._latency.get(protocol)
        if latency is None:
            latency = self.served.metrics.latency.labels(self.served.name, protocol)
            self._latency[protocol] = latency
        latency.observe(seconds)
        if not self._flush_due:
            self._flush_later()

    def _flush_later(self) -> None:
        self._flush_due = True
        asyncio.get_running_loop().call_soon(self.flush_metrics)

    def flush_metrics(self) -> None:
        """Add the requests counted since the last flush to the Prometheus counters.

        Counting in a dictionary and flushing once per event-loop turn (before
        the loop reads more requests, so a scrape never misses an answered
        request) saves a locked write to shared memory per counter per request.
        """
        self._flush_due = False
        self._in_flight.set(self._in_flight_now)
        tally, self._tally = self._tally, {}
        answered = 0
        for key, count in tally.items():
            counter = self._counters.get(key)
            if counter is None:
                protocol, status = key
                counter = self.served.metrics.requests.labels(
                    self.served.name, protocol, str(status)
                )
                self._counters[key] = counter
            counter.inc(count)
            answered += count
        if answered:
            self._worker_requests.inc(answered)

    def _count_error(self, kind: str) -> None:
        counter = self._errors.get(kind)
        if counter is None:
            counter = self.served.metrics.errors.labels(self.served.name, kind)
            self._errors[kind] = counter
        counter.inc()
