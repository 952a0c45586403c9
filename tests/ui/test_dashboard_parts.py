"""The dashboard without a server: sessions and links on a fake clock, the stream drawing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from conveyor.server.ui.render import page
from conveyor.server.ui.session import COOKIE, IDLE_S, LINK_S, Sessions
from conveyor.server.ui.streams import layout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(cookie: str) -> Request:
    return Request({"type": "http", "headers": [(b"cookie", f"{COOKIE}={cookie}".encode())]})


def test_a_session_ends_after_it_is_left_idle() -> None:
    clock = Clock()
    sessions = Sessions("secret", clock=clock)
    session = sessions.open()
    clock.now += IDLE_S - 1
    assert sessions.of(_request(session.id)) is session  # use keeps it alive
    clock.now += IDLE_S - 1
    assert sessions.of(_request(session.id)) is session
    clock.now += IDLE_S + 1
    assert sessions.of(_request(session.id)) is None
    assert sessions.of(_request("made-up")) is None


def test_a_link_opens_one_session_and_only_in_time() -> None:
    clock = Clock()
    sessions = Sessions("secret", clock=clock)
    once = sessions.new_link()
    assert sessions.use_link(once)
    assert not sessions.use_link(once)
    late = sessions.new_link()
    clock.now += LINK_S + 1
    assert not sessions.use_link(late)
    assert not sessions.use_link("")


def test_only_the_token_itself_matches() -> None:
    sessions = Sessions("secret")
    assert sessions.token_matches("secret")
    assert sessions.token_matches(" secret\n")  # pasted with a newline
    assert not sessions.token_matches("secre")
    assert not sessions.token_matches("")


def test_the_drawing_joins_apps_through_their_destinations() -> None:
    apps: list[dict[str, Any]] = [
        {"name": "tx-http", "app": "http", "input": None, "output": "tx.http"},
        {"name": "tx-filter", "app": "filter", "input": "tx.http", "output": "tx.filter"},
        {"name": "tx-log", "app": "log", "input": "tx.filter", "output": None},
    ]
    nodes, edges, width = layout(apps)
    assert [(n.kind, n.label) for n in nodes] == [
        ("source", "http"),
        ("destination", "tx.http"),
        ("processor", "filter"),
        ("destination", "tx.filter"),
        ("sink", "log"),
    ]
    assert len(edges) == 4
    assert all(x1 < x2 for x1, _, x2, _ in edges)  # left to right, in pipe order
    assert width >= nodes[-1].x + nodes[-1].w


def test_what_a_user_wrote_is_escaped_in_every_template() -> None:
    html = bytes(
        page(
            "error.html", 400, title="<b>t</b>", message="<script>alert(1)</script>", hint="<i>"
        ).body
    ).decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert "&lt;b&gt;t&lt;/b&gt;" in html
