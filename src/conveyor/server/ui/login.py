"""Logging in by the platform token or a one-time link, and out again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from conveyor.server.ui.context import Ui, back
from conveyor.server.ui.render import page
from conveyor.server.ui.session import COOKIE, IDLE_S, read_form

__all__ = ["routes"]


def routes(ui: Ui) -> APIRouter:
    api = APIRouter()

    @api.get("/login")
    async def login_page(once: str = "") -> Response:
        return page("login.html", once=once, problem=None)

    @api.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        once, token = form.get("once", ""), form.get("token", "")
        if (once and ui.sessions.use_link(once)) or (token and ui.sessions.token_matches(token)):
            response = back("/ui/")
            session = ui.sessions.open()
            response.set_cookie(
                COOKIE,
                session.id,
                max_age=int(IDLE_S),
                path="/ui",
                httponly=True,
                samesite="strict",
            )
            return response
        problem = (
            "This login link was used already or has expired; run `conveyor dashboard` for "
            "a new one, or log in with the token."
            if once
            else "That is not this platform's token. It is in <CONVEYOR_HOME>/platform/token."
        )
        return page("login.html", 401, once="", problem=problem)

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        session, _ = await ui.action(request)
        ui.sessions.close(session)
        response = back("/ui/login")
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @api.post("/link")
    async def new_link(request: Request) -> Response:
        """A one-time login link for `conveyor dashboard`; needs the bearer token itself."""
        given = request.headers.get("authorization", "")
        if not ui.sessions.token_matches(given.removeprefix("Bearer ")) or not given.startswith(
            "Bearer "
        ):
            return JSONResponse({"error": "missing or wrong API token"}, 401)
        return JSONResponse({"path": f"/ui/login?once={ui.sessions.new_link()}"})

    return api
