"""The dashboard over plain HTTP: who gets in, what every page shows, what actions refuse."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from conveyor.cli.client import ApiError
from conveyor.store.records import RunStatus
from tests.platform.control import Platform, running_platform
from tests.ui.dashboard import XSS, api_url, csrf_of, logged_in, record_run, token


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    """Clients a test opened, closed after it."""
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def _anonymous(platform: Platform, clients: list[httpx.Client]) -> httpx.Client:
    client = httpx.Client(base_url=api_url(platform), timeout=60)
    clients.append(client)
    return client


def _logged_in(platform: Platform, clients: list[httpx.Client]) -> httpx.Client:
    client = logged_in(platform)
    clients.append(client)
    return client


def test_pages_need_a_session_and_the_api_still_needs_the_token(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    anonymous = _anonymous(platform, clients)
    page = anonymous.get("/ui/runs")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login"
    assert anonymous.get("/ui/static/ui.css").status_code == 200
    assert anonymous.get("/ui/login").status_code == 200
    # only /ui itself and what is below it is open: not the API, not a look-alike path
    for path in ("/v1/apps", "/uix", "/docs", "/openapi.json"):
        assert anonymous.get(path).status_code == 401, path
    wrong = anonymous.post("/ui/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "not this platform" in wrong.text
    assert "set-cookie" not in wrong.headers


def test_login_sets_a_strict_http_only_cookie_and_every_page_a_strict_csp(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    anonymous = _anonymous(platform, clients)
    answer = anonymous.post("/ui/login", data={"token": token(platform)})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/ui" in cookie
    for path in ("/ui/", "/ui/runs", "/ui/apps", "/ui/streams"):
        page = anonymous.get(path)
        assert page.status_code == 200, (path, page.text[-600:])
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "<script>" not in page.text  # scripts only by src=, from /ui/static


def test_a_one_time_link_logs_in_once(platform: Platform, clients: list[httpx.Client]) -> None:
    anonymous = _anonymous(platform, clients)
    assert anonymous.post("/ui/link").status_code == 401
    out = platform.cli("dashboard", "--print-only").stdout
    assert "Dashboard: http://" in out
    url = out.split("Dashboard: ", 1)[1].split()[0]
    once = url.split("once=", 1)[1]
    assert anonymous.get(url).status_code == 200  # the page that posts it; not a login yet
    first = anonymous.post("/ui/login", data={"once": once})
    assert first.status_code == 303
    assert anonymous.get("/ui/runs").status_code == 200
    again = _anonymous(platform, clients)
    second = again.post("/ui/login", data={"once": once})
    assert second.status_code == 401
    assert "used already or has expired" in second.text


def test_actions_without_the_csrf_token_are_refused(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    client = _logged_in(platform, clients)
    refused = client.post("/ui/logout", data={})
    assert refused.status_code == 403
    assert "did not carry this session" in refused.text
    csrf = csrf_of(client.get("/ui/").text)
    assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/ui/").status_code == 303  # logged out


def test_runs_filter_sort_page_and_escape_what_users_wrote(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    for n in range(30):
        record_run(platform, f"sweep-{n:02d}", {"n": n}, {"auc": [0.5 + n / 100]})
    record_run(platform, XSS, {"note": XSS}, {"auc": [0.1]}, status=RunStatus.FAILED)
    client = _logged_in(platform, clients)
    search = {"where": "name like 'sweep%'", "sort": "metrics.auc", "order": "desc"}
    page = client.get("/ui/runs", params=search)
    assert page.status_code == 200
    text = page.text
    assert text.index("sweep-29") < text.index("sweep-28")
    assert "sweep-03" not in text  # on page 2
    assert 'rel="next"' in text
    second = client.get("/ui/runs", params={**search, "page": 2}).text
    assert "sweep-03" in second
    assert "sweep-29" not in second
    failed = client.get("/ui/runs", params={"status": "FAILED"}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in failed
    assert XSS not in failed
    overview = client.get("/ui/").text
    assert "&lt;script&gt;" in overview
    assert XSS not in overview
    bad = client.get("/ui/runs", params={"status": "DONE"})
    assert bad.status_code == 400
    assert "DONE&#39; is not a run status; use one of RUNNING" in bad.text
    assert client.get("/ui/runs", params={"sort": "colour"}).status_code == 400


def test_the_newest_runs_page_by_cursor(platform: Platform, clients: list[httpx.Client]) -> None:
    for n in range(30):
        record_run(platform, f"cursor-{n:02d}", {}, {}, experiment="cursor-paging")
    client = _logged_in(platform, clients)
    first = client.get("/ui/runs", params={"experiment": "cursor-paging"}).text
    assert "cursor-29" in first
    assert "cursor-04" not in first
    href = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert "after=" in href  # a keyset cursor, not a count of the runs before
    second = client.get(href.replace("&amp;", "&")).text
    assert "cursor-04" in second
    assert "cursor-29" not in second


def test_the_search_box_filters_and_points_at_a_mistake(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    record_run(platform, "search-a", {"trees": 100}, {"auc": [0.8]}, experiment="churn-ui")
    record_run(
        platform,
        "search-b",
        {"trees": 300},
        {"auc": [0.95]},
        experiment="churn-ui",
        tags={"stage": "prod"},
    )
    record_run(platform, "search-c", {"trees": 300}, {"auc": [0.97]}, experiment="other-ui")
    client = _logged_in(platform, clients)
    where = "params.trees >= 200 and metrics.auc > 0.9 and tags.stage = 'prod'"
    found = client.get("/ui/runs", params={"where": where}).text
    assert "search-b" in found
    assert "search-a" not in found
    assert "search-c" not in found
    assert "stage=prod" in found
    by_experiment = client.get("/ui/runs", params={"experiment": "churn-ui"}).text
    assert "search-a" in by_experiment
    assert "search-c" not in by_experiment
    assert '<option value="other-ui"' in by_experiment
    wrong = client.get("/ui/runs", params={"where": "metrics.auc >> 1"})
    assert wrong.status_code == 400
    assert "search error at position 13" in wrong.text
    assert "  metrics.auc &gt;&gt; 1\n               ^" in wrong.text


def test_tags_and_deletion_from_a_runs_page(
    platform: Platform, clients: list[httpx.Client]
) -> None:
    run_id = record_run(platform, "managed-run", {}, {}, experiment="managed-ui")
    client = _logged_in(platform, clients)
    page = client.get(f"/ui/runs/{run_id}").text
    csrf = csrf_of(page)
    forged = client.post(f"/ui/runs/{run_id}/tags", data={"key": "stage", "value": XSS})
    assert forged.status_code == 403
    done = client.post(f"/ui/runs/{run_id}/tags", data={"csrf": csrf, "key": "stage", "value": XSS})
    assert done.status_code == 303
    shown = client.get(f"/ui/runs/{run_id}").text
    assert "stage=&lt;script&gt;" in shown
    assert XSS not in shown
    client.post(f"/ui/runs/{run_id}/tags", data={"csrf": csrf, "key": "bad=key", "value": "x"})
    assert "is not a tag name" in client.get(f"/ui/runs/{run_id}").text  # said on the page
    client.post(f"/ui/runs/{run_id}/untag", data={"csrf": csrf, "key": "stage"})
    assert "No tags." in client.get(f"/ui/runs/{run_id}").text

    client.post(f"/ui/runs/{run_id}/delete", data={"csrf": csrf})
    assert "managed-run" not in client.get("/ui/runs", params={"experiment": "managed-ui"}).text
    listed = client.get("/ui/runs", params={"experiment": "managed-ui", "deleted": "1"}).text
    assert "managed-run" in listed
    assert "Restore" in client.get(f"/ui/runs/{run_id}").text
    client.post(f"/ui/runs/{run_id}/restore", data={"csrf": csrf})
    assert "managed-run" in client.get("/ui/runs", params={"experiment": "managed-ui"}).text


def test_the_api_searches_tags_and_deletes_runs(platform: Platform) -> None:
    run_id = record_run(platform, "api-run", {"trees": 500}, {"auc": [0.9]}, experiment="api-x")
    api = platform.client
    tagged = api.call("POST", f"/v1/runs/{run_id[:12]}/tags", {"tags": {"stage": "prod"}})
    assert tagged["tags"] == {"stage": "prod"}
    where = "params.trees = 500 and tags.stage = 'prod'"
    listed = api.call("GET", "/v1/runs?" + urlencode({"where": where, "experiment": "api-x"}))
    assert [r["name"] for r in listed["runs"]] == ["api-run"]
    with pytest.raises(ApiError, match="search error at position 14"):
        api.call("GET", "/v1/runs?" + urlencode({"where": "metrics.auc = 'x'"}))
    assert api.call("POST", f"/v1/runs/{run_id}/delete")["deleted_at"] is not None
    assert api.call("GET", "/v1/runs?experiment=api-x")["runs"] == []
    assert api.call("POST", f"/v1/runs/{run_id}/restore")["deleted_at"] is None
    assert api.call("DELETE", f"/v1/runs/{run_id}/tags/stage")["tags"] == {}


def test_a_run_and_two_runs_compared(platform: Platform, clients: list[httpx.Client]) -> None:
    a = record_run(platform, "cmp-a", {"lr": 0.1, "depth": 3}, {"auc": [0.7, 0.8, 0.9]})
    b = record_run(platform, "cmp-b", {"lr": 0.2, "depth": 3}, {"auc": [0.7, 0.85]})
    client = _logged_in(platform, clients)
    shown = client.get(f"/ui/runs/{a[:10]}").text
    assert "cmp-a" in shown
    assert "3 points" in shown
    assert "0123456789ab" in shown
    compared = client.get("/ui/compare", params=[("run", a), ("run", b)]).text
    assert '<tr class="differs"><td class="mono">lr</td>' in compared
    assert '<tr class=""><td class="mono">depth</td>' in compared
    # both histories of auc drawn on one chart, one line each
    assert 'aria-label="history of auc for 2 runs"' in compared
    assert '<polyline class="s0"' in compared
    assert '<polyline class="s1"' in compared
    one = client.get("/ui/compare", params={"run": a})
    assert one.status_code == 400
    assert "compare 2 to 8 runs" in one.text
    missing = client.get("/ui/runs/ffffffffffff")
    assert missing.status_code == 404
