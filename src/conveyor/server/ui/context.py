"""What every page module shares: the platform's parts, the session check and the CSRF check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from conveyor.server.ui.render import page
from conveyor.server.ui.session import Session, Sessions, read_form

if TYPE_CHECKING:
    from conveyor.config import Settings
    from conveyor.orchestrate import StreamService
    from conveyor.orchestrate.task_schedules import TaskScheduler
    from conveyor.orchestrate.tasks import TaskService
    from conveyor.platform.controller import Controller

__all__ = ["Ui", "back", "handle_refusals"]


class _LoginNeeded(Exception):
    """The request has no live session: the browser is sent to the login page."""


class _Refused(Exception):
    """An action without the session's CSRF token (a form from another site, or a stale one)."""


def handle_refusals(app: FastAPI) -> None:
    """Answer what the checks below refuse: to the login page, or a 403 that says why."""

    @app.exception_handler(_LoginNeeded)
    async def login_needed(_request: Request, _exc: _LoginNeeded) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @app.exception_handler(_Refused)
    async def refused(_request: Request, _exc: _Refused) -> Response:
        return page(
            "error.html",
            403,
            title="Action refused",
            message="The form did not carry this session's token (it may come from another "
            "site, or from before you logged in again). Reload the page and try again.",
        )


@dataclass
class Ui:
    """The dashboard's view of one platform."""

    controller: Controller
    streams: StreamService
    sessions: Sessions
    tasks: TaskService
    schedules: TaskScheduler
    settings: Settings

    def session(self, request: Request) -> Session:
        session = self.sessions.of(request)
        if session is None:
            raise _LoginNeeded
        return session

    async def action(self, request: Request) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST that carries the session's CSRF token."""
        session = self.session(request)
        form = await read_form(request)
        if not secrets.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            raise _Refused
        return session, form

    def view(
        self, request: Request, template: str, *, http_status: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page for the logged-in user, with the CSRF token its forms carry."""
        session = self.session(request)
        flash, session.flash = session.flash, []
        section = request.url.path.removeprefix("/ui").strip("/").split("/")[0] or "overview"
        return page(
            template, http_status, csrf=session.csrf, flash=flash, section=section, **values
        )


def back(to: str) -> RedirectResponse:
    """After an action: show the page again (a GET, so reloading does not repeat it)."""
    return RedirectResponse(to, status_code=303)
