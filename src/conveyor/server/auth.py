"""The control API's one rule before any route: every HTTP request carries the bearer token.

One prefix may be left open: the dashboard's, whose pages check a session cookie instead.
"""

from __future__ import annotations

import secrets

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TokenGuard"]

_REFUSAL = orjson.dumps(
    {
        "error": "missing or wrong API token",
        "hint": "The CLI reads it from <CONVEYOR_HOME>/platform/token; "
        "send it as 'Authorization: Bearer <token>'.",
    }
)


class TokenGuard:
    """Pure ASGI: 401 unless ``Authorization: Bearer <token>`` (compared in constant time).

    It wraps the whole app, so the OpenAPI document and the docs need the token too.
    Requests under ``open_prefix`` (the path itself or below it, never a path that
    merely starts with the same letters) pass to an app that checks them itself.
    """

    def __init__(self, app: ASGIApp, token: str, *, open_prefix: str | None = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_prefix = open_prefix

    def _open(self, path: str) -> bool:
        prefix = self.open_prefix
        return prefix is not None and (path == prefix or path.startswith(prefix + "/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._open(scope["path"]):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _REFUSAL})
                return
        await self.app(scope, receive, send)
