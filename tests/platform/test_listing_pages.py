"""The control API's listings page with ?limit=&after=; the body stays the plain list."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI

from conveyor.server import streams as stream_routes


class _Streams:
    """A stream service holding nothing but names (the listing is all this test asks of it)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def list_streams(self) -> list[dict[str, Any]]:
        return [{"name": n, "status": "undeployed"} for n in self.names]


def _get(app: FastAPI, path: str, query: str = "") -> tuple[int, dict[str, str], Any]:
    """One GET through the ASGI app: its status, headers and decoded body."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, orjson.loads(body)


def _app(names: list[str]) -> FastAPI:
    app = FastAPI()
    app.include_router(stream_routes.routes(_Streams(names)))  # type: ignore[arg-type]
    return app


def test_pages_cover_every_stream_once_and_name_the_next() -> None:
    names = [f"s{i:03d}" for i in range(25)]
    app = _app(list(reversed(names)))
    seen: list[str] = []
    query = "limit=10"
    while True:
        status, headers, body = _get(app, "/v1/streams", query)
        assert status == 200
        seen += [s["name"] for s in body]
        if "x-next-cursor" not in headers:
            break
        assert headers["link"] == (
            f'</v1/streams?limit=10&after={headers["x-next-cursor"]}>; rel="next"'
        )
        query = f"limit=10&after={headers['x-next-cursor']}"
    assert seen == names


def test_without_limit_the_whole_list_as_before() -> None:
    status, headers, body = _get(_app(["b", "a"]), "/v1/streams")
    assert (status, [s["name"] for s in body]) == (200, ["a", "b"])
    assert "link" not in headers


def test_a_bad_limit_is_refused_with_what_is_wrong() -> None:
    status, _, body = _get(_app(["a"]), "/v1/streams", "limit=0")
    assert 400 <= status < 500  # the control API's handler words it; FastAPI's here
    assert "limit" in orjson.dumps(body).decode()
