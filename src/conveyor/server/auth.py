"""The control API's one rule before any route: every HTTP request carries the bearer token."""

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
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
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
