"""A stream's page deploys and undeploys it (POST + CSRF), keeping its properties."""

from __future__ import annotations

import httpx
import pytest

from tests.platform.control import Platform
from tests.ui.dashboard import csrf_of
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def _apps(platform: Platform) -> str:
    return platform.cli("apps").stdout


def test_a_stream_is_undeployed_and_deployed_again_from_its_page(
    platform: Platform, client: httpx.Client
) -> None:
    platform.cli("stream", "create", "beats", "--definition", "time | log")
    platform.cli("stream", "deploy", "beats", "--properties", "app.time.interval=5")
    page = client.get("/ui/streams/beats").text
    assert 'action="/ui/streams/beats/undeploy"' in page
    assert client.post("/ui/streams/beats/undeploy").status_code == 403  # no CSRF token

    done = client.post("/ui/streams/beats/undeploy", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    page = client.get("/ui/streams/beats").text
    assert "stream beats undeployed: 2 app(s)" in page
    assert 'action="/ui/streams/beats/deploy"' in page
    assert "beats-time" not in _apps(platform)

    client.post("/ui/streams/beats/deploy", data={"csrf": csrf_of(page)})
    page = client.get("/ui/streams/beats").text
    assert "stream beats deployed (version 2)" in page
    eventually(lambda: "beats-time" in _apps(platform), what="the stream's apps back")
    history = platform.client.call("GET", "/v1/streams/beats/history")
    assert history[-1]["description"] == "deploy (dashboard)"
    assert history[-1]["properties"] == {"app.time.interval": "5"}  # kept from version 1
    platform.cli("stream", "destroy", "beats")
