"""The scoring service: routing, limits, lineage headers and metrics for one served model.

No web framework sits on the hot path: the server (:mod:`conveyor.serving.wire`)
hands over each parsed request, its path is looked up in a table built at
start-up from the protocol registry (:mod:`conveyor.serving.protocols`), it
is given to its protocol's handler, scored by the batcher, and answered with
the lineage headers::

    x-request-id: 5f0c...            (the client's own id when it sent one)
    x-model-name: churn
    x-model-digest: blake3:ab12...
    x-model-run-id: 01J...           (when the run that trained it is known)
    x-model-version: diagnosis/3     (when it is a version of the model registry)

Anything wrong with a request becomes a 4xx with ``{"error": ...}``; an
unexpected failure becomes a 500 naming the request id, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from conveyor._http import RequestIds
from conveyor._version import __version__
from conveyor.serving import openapi
from conveyor.serving.errors import RequestError
from conveyor.serving.http import Request, Response, discard_reply, dumps
from conveyor.serving.predictions import PredictionLog
from conveyor.serving.protocols import PROTOCOLS, Route
from conveyor.serving.service import Scoring, ServedModel
from conveyor.store.requestlog import RequestLogWriter

__all__ = ["ScoringApp"]

log = logging.getLogger("conveyor.serving")

_REFUSAL_KINDS = {
    400: "bad_request",
    408: "timeout",
    413: "too_large",
    431: "too_large",
}


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
        self._ignored = metrics.ignored_fields.labels(name)
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
        if served.resolved.registered:
            lineage.append((b"x-model-version", served.resolved.registered.encode()))
        #: The lineage headers, ready to go into every answer's head.
        self.lineage_head = b"".join(b"%s: %s\r\n" % pair for pair in lineage)
        self._ids = RequestIds()
        self._request_log = _request_log(served)
        self._predictions = _prediction_log(served)
        self._log_flush_due = False
        self._openapi = dumps(openapi.openapi_document(served))
        self._docs = openapi.docs_page(served).encode()
        self._routes = self._table()

    # -- what the server calls ----------------------------------------------------

    def handle(self, req: Request) -> None:
        """Answer ``req`` through ``req.reply``: at once, or when the batcher has scored it."""
        self._identify(req)
        self._in_flight_now += 1
        if not self._flush_due:
            self._flush_later()
        protocol = "other"
        try:
            route, label = self._routes.get(req.path) or self._resolve(req.path)
            handler = route.score
            if handler is None:
                protocol = req.protocol = label
                self._method(req, "GET", "HEAD")
                if route.page is None:
                    raise RequestError(
                        f"no route {req.path!r}; see /docs for the routes this service answers",
                        status=404,
                        kind="not_found",
                    )
                self._answer(req, route.page(self), protocol)
                return
            if req.method != "POST":
                self._method(req, "POST")
            protocol = req.protocol = label
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
        self._observe(self._protocol_of(req.path), status, 0.0)
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
        if self._request_log is not None:
            self._request_log.close()
        if self._predictions is not None:
            self._predictions.close()

    # -- answering ----------------------------------------------------------------

    def _identify(self, req: Request) -> None:
        req.request_id = self._ids.accept(req.headers.get("x-request-id"))

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
            outputs = self.served.outputs(scored)
            response = scoring.answer(outputs)
            if self._predictions is not None and self._predictions.wants():
                self._predictions.record(req.request_id, scoring.columns, outputs)
        except Exception as exc:
            response = self._failure(exc, req)
        ignored = getattr(scoring.columns, "ignored", ())
        if ignored:
            response.headers["x-ignored-fields"] = ", ".join(ignored)
            self._ignored.inc(len(ignored))
        self._answer(req, response, protocol)
        if self._request_log is not None:
            self._log_request(req.request_id)

    def _log_request(self, request_id: str) -> None:
        log = self._request_log
        assert log is not None
        log.record(request_id)
        if not self._log_flush_due and log.pending:
            # Written once a second (or every FLUSH_EVERY ids), never per request.
            self._log_flush_due = True
            asyncio.get_running_loop().call_later(1.0, self._flush_log)

    def _flush_log(self) -> None:
        self._log_flush_due = False
        if self._request_log is not None:
            self._request_log.flush()

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

    def _table(self) -> dict[str, tuple[Route, str]]:
        """Every exact path this app answers, with its metrics label (one dict hit per request)."""
        served = self.served
        table: dict[str, tuple[Route, str]] = {}
        for protocol in PROTOCOLS:
            for route in protocol.routes(served):
                if route.path in table:
                    raise ValueError(f"protocol {protocol.name!r} repeats the path {route.path}")
                label = protocol.name if route.score else self._label(route.path)
                table[route.path] = (route, label)
        own = {
            "/version": self._version,
            "/metrics": self._metrics,
            "/openapi.json": self._openapi_page,
            "/docs": self._docs_page,
            "/": self._docs_page,
        }
        for path, page in own.items():
            table[path] = (Route(path, page=page), "other")
        return table

    def _protocol_of(self, path: str) -> str:
        """The metrics label of the route a path names (a request refused before routing)."""
        found = self._routes.get(path)
        if found is not None:
            return found[1]
        try:
            return self._resolve(path)[1]
        except RequestError:  # another model's path: still its protocol's
            return self._label(path)

    @staticmethod
    def _label(path: str) -> str:
        """The metrics label of a path that is not a scoring route."""
        for protocol in PROTOCOLS:
            if protocol.prefix is not None and path.startswith(protocol.prefix):
                return protocol.name
        return "other"

    def _resolve(self, path: str) -> tuple[Route, str]:
        """A path the table misses: another model's name (404), an alias, or no route."""
        for protocol in PROTOCOLS:
            route = protocol.resolve(self.served, path)
            if route is not None:
                return route, protocol.name if route.score else self._label(path)
        return Route(path), self._label(path)

    @staticmethod
    def _method(req: Request, *allowed: str) -> None:
        if req.method not in allowed:
            raise RequestError(
                f"{req.method} is not allowed on {req.path}; use {', '.join(allowed)}",
                status=405,
                kind="method",
                headers={"allow": ", ".join(allowed)},
            )

    # -- the app's own pages (the protocols' pages are in their modules) ---------------

    def _version(self, site: object) -> Response:
        return Response(body=__version__.encode(), content_type="text/plain")

    def _metrics(self, site: object) -> Response:
        self.flush_metrics()
        body, ctype = self.served.metrics.exposition()
        return Response(body=body, content_type=ctype)

    def _openapi_page(self, site: object) -> Response:
        return Response(body=self._openapi)

    def _docs_page(self, site: object) -> Response:
        return Response(body=self._docs, content_type="text/html; charset=utf-8")

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


def _lineage(served: ServedModel) -> dict[str, Any]:
    """What a log record says about the model that answered."""
    resolved, options = served.resolved, served.options.request_log
    return {
        "model": resolved.name,
        "digest": resolved.digest,
        "run": resolved.run_id,
        "app": options.app if options else None,
        "revision": options.revision if options else None,
    }


def _prediction_log(served: ServedModel) -> PredictionLog | None:
    options = served.options.prediction_log
    if options is None or options.sample <= 0:
        return None
    return PredictionLog(options, _lineage(served))


def _request_log(served: ServedModel) -> RequestLogWriter | None:
    """The request log this process writes, if ``--request-log`` asked for one."""
    options = served.options.request_log
    if options is None or options.sample <= 0:
        return None
    # ``registered``: the version a standalone ``conveyor serve models:/…`` serves, which its
    # lineage goes through (on the platform the app revision records it).
    header = {
        **_lineage(served),
        "source": served.resolved.source,
        "registered": served.resolved.registered,
    }
    return RequestLogWriter(
        options.folder, header, sample=options.sample, retention=options.retention
    )
