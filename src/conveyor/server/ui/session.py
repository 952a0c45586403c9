"""Who may see the dashboard: sessions opened by the platform token or a one-time link.

A session is a random id in an HttpOnly, SameSite=Strict cookie; what it
stands for (its CSRF token, when it ends) stays in this process, so a
restarted platform asks everyone to log in again. A one-time link carries a
random nonce that opens one session within a few minutes and never again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.requests import Request

__all__ = ["COOKIE", "Session", "Sessions", "read_form"]

COOKIE = "conveyor_ui"
#: A session ends this long after it was last used.
IDLE_S = 12 * 3600.0
#: A one-time link must be opened within this long.
LINK_S = 300.0
#: A form body larger than this is not a dashboard form.
FORM_LIMIT = 64 * 1024


@dataclass
class Session:
    """One logged-in browser."""

    id: str
    csrf: str
    last_seen: float
    #: A message for the next page shown (what an action did, or why it failed).
    flash: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    """The open sessions and unused one-time links of one platform process."""

    def __init__(self, token: str, *, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._clock = clock
        self._open: dict[str, Session] = {}
        self._links: dict[str, float] = {}

    def token_matches(self, given: str) -> bool:
        return secrets.compare_digest(given.strip().encode(), self._token)

    def open(self) -> Session:
        now = self._clock()
        self._expire(now)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now)
        self._open[session.id] = session
        return session

    def close(self, session: Session) -> None:
        self._open.pop(session.id, None)

    def of(self, request: Request) -> Session | None:
        """The request's session, if its cookie names a live one."""
        sid = request.cookies.get(COOKIE, "")
        session = self._open.get(sid)
        now = self._clock()
        if session is None or now - session.last_seen > IDLE_S:
            self._open.pop(sid, None)
            return None
        session.last_seen = now
        return session

    def new_link(self) -> str:
        """A nonce for ``/ui/login?once=<nonce>``, good for one login."""
        now = self._clock()
        self._expire(now)
        nonce = secrets.token_urlsafe(32)
        self._links[nonce] = now + LINK_S
        return nonce

    def use_link(self, nonce: str) -> bool:
        deadline = self._links.pop(nonce, None)
        return deadline is not None and self._clock() <= deadline

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._open.values() if now - s.last_seen > IDLE_S]:
            del self._open[sid]
        for nonce in [n for n, until in self._links.items() if now > until]:
            del self._links[nonce]


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each); an oversized body reads as empty."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}
