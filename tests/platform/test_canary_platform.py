"""Canaries end to end: a real platform, real instances, requests through the router on loopback.

One app, ``web`` (the stdlib hello app, which says which revision answered),
goes through a canary at 10 % (the split counted over 1000 requests), a
weight change and a promotion under load (no failed request), an abort, and
an automatic rollback of a revision that answers 500. Another, ``surge``, is
autoscaled under load during a canary: one count for both revisions, shared
by the weight.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.platform.control import Platform, get, running_platform
from tests.ui.dashboard import logged_in
from tests.waiting import eventually

pytestmark = pytest.mark.slow

#: Bounds of every load loop: requests and seconds.
MOST_REQUESTS = 5000
MOST_SECONDS = 60.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("canary")) as running:
        yield running


@pytest.fixture(scope="module")
def web(platform: Platform) -> str:
    """The app pushed once (revision 1, two instances); its URL through the router."""
    manifest = platform.write_hello_app("web", instances=2)
    platform.cli("push", "-f", str(manifest))
    return f"{platform.router}/web/"


def revisions(url: str, count: int) -> Counter[tuple[int, str | None]]:
    """(status, revision that answered) of ``count`` requests, one after another."""
    seen: Counter[tuple[int, str | None]] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            response = client.get(url)
            seen[response.status_code, response.json().get("revision")] += 1
    return seen


class Load:
    """Requests sent one after another from a thread until stopped (bounded), counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: Counter[tuple[int, str | None]] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + MOST_SECONDS
        with httpx.Client(timeout=30) as client:
            for _ in range(MOST_REQUESTS):
                if self.stop.is_set() or time.monotonic() > end:
                    return
                try:
                    response = client.get(self.url)
                    self.seen[response.status_code, response.json().get("revision")] += 1
                except httpx.HTTPError as exc:
                    self.seen[0, type(exc).__name__] += 1


def canary_of(platform: Platform, name: str) -> dict[str, object] | None:
    canary: dict[str, object] | None = platform.app(name)["canary"]
    return canary


def test_a_canary_needs_a_running_revision(platform: Platform) -> None:
    manifest = platform.write_hello_app("solo", instances=1)
    refused = platform.cli("push", "-f", str(manifest), "--canary", "10", check=False)
    assert refused.returncode != 0
    assert "app 'solo' has no running revision to compare a canary with" in refused.stderr
    lonely = platform.cli("push", "-f", str(manifest), "--promote-after", "5m", check=False)
    assert lonely.returncode != 0
    assert "apply to a canary only" in lonely.stderr


def test_a_canary_at_10_percent_gets_a_tenth_of_the_requests(platform: Platform, web: str) -> None:
    manifest = platform.project / "web.yml"
    pushed = platform.cli("push", "-f", str(manifest), "--canary", "10", "--no-rollback")
    assert "web: canary revision 2 gets 10 % of requests, revision 1 the rest" in pushed.stdout
    seen = revisions(web, 1000)
    assert seen[200, "2"] + seen[200, "1"] == 1000
    assert 70 <= seen[200, "2"] <= 130, seen  # 10 %, within three points
    shown = platform.cli("app", "web").stdout
    assert "canary:   revision 2 gets 10 %, revision 1 the rest" in shown
    assert "instances: 1 of revision 2, 1 of revision 1" in shown  # the app's 2, shared
    assert "1 (2 at 10 %)" in platform.cli("apps").stdout
    dashboard = logged_in(platform)
    try:
        page = dashboard.get("/ui/apps/web").text
    finally:
        dashboard.close()
    assert "Canary: revision 2 gets 10 % of requests, revision 1 the rest" in page
    again = platform.cli("push", "-f", str(manifest), "--canary", "20", check=False)
    assert again.returncode != 0
    assert "has a canary running" in again.stderr
    assert "a second canary waits" in again.stderr
    assert [r["number"] for r in platform.client.call("GET", "/v1/apps/web/revisions")] == [1, 2]

    weighed = platform.cli("canary", "web", "--weight", "50").stdout
    assert "web: canary:   revision 2 gets 50 %" in weighed
    halves = revisions(web, 200)
    assert halves[200, "2"] + halves[200, "1"] == 200
    assert 90 <= halves[200, "2"] <= 110, halves  # exact unless an instance left routing

    load = Load(web)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load.run)
        eventually(lambda: sum(load.seen.values()) > 20, what="load to flow")
        promoted = platform.cli("canary", "web", "promote").stdout
        after = sum(load.seen.values())
        eventually(lambda: sum(load.seen.values()) > after + 50, what="load after promotion")
        load.stop.set()
        running.result()
    assert "web: revision 2 promoted: it takes every request" in promoted
    assert set(load.seen) <= {(200, "1"), (200, "2")}, load.seen  # not one failed request
    assert revisions(web, 50) == Counter({(200, "2"): 50})
    history = platform.cli("revisions", "web").stdout
    assert "push --canary 10  (canary promoted: by hand)" in history
    assert canary_of(platform, "web") is None


def test_abort_sends_everything_back_to_the_current_revision(platform: Platform, web: str) -> None:
    manifest = platform.project / "web.yml"
    platform.cli("push", "-f", str(manifest), "--canary", "50", "--no-rollback")
    seen = revisions(web, 100)
    assert seen[200, "3"] + seen[200, "2"] == 100
    assert 40 <= seen[200, "3"] <= 60, seen
    aborted = platform.cli("canary", "web", "abort").stdout
    assert "web: canary revision 3 aborted: revision 2 takes every request" in aborted
    assert revisions(web, 50) == Counter({(200, "2"): 50})
    assert [i["revision"] for i in platform.app("web")["instances_detail"]] == [2, 2]
    none = platform.cli("canary", "web", "abort", check=False)
    assert none.returncode != 0
    assert "app 'web' has no canary running" in none.stderr


def test_a_canary_answering_500_is_rolled_back_by_itself(platform: Platform, web: str) -> None:
    manifest = platform.write_hello_app(
        "web", instances=2, extra="    env: {HELLO_STATUS: '500'}\n"
    )
    platform.cli(
        "push", "-f", str(manifest), "--canary", "20", "--canary-window", "1s",
        "--min-requests", "5",
    )  # fmt: skip
    load = Load(web)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load.run)
        eventually(lambda: canary_of(platform, "web") is None, what="the canary to be rolled back")
        load.stop.set()
        running.result()
    assert load.seen[500, "4"] > 0  # it did answer 500s, to about a fifth of the requests
    assert set(load.seen) <= {(200, "2"), (500, "4")}, load.seen
    assert revisions(web, 50) == Counter({(200, "2"): 50})
    events = platform.client.call("GET", "/v1/apps/web/events?limit=20")
    rolled = [e for e in events if e["kind"] == "canary-rolled-back"]
    assert rolled
    assert rolled[-1]["revision"] == 4
    assert rolled[-1]["details"]["reason"].startswith("error rate 100.0% against 0.0%")
    assert "canary-rolled-back" in platform.cli("events", "web").stdout
    assert platform.app("web")["revision"] == 2


def by_revision(platform: Platform, name: str) -> Counter[int]:
    """How many instances of each revision of ``name`` run now (whatever their state)."""
    return Counter(i["revision"] for i in platform.app(name)["instances_detail"])


def test_under_load_a_canarys_app_scales_as_one_and_both_revisions_in_proportion(
    platform: Platform,
) -> None:
    policy = (
        "    autoscaling:\n"
        "      {max-instances: 4, target-ongoing-requests: 2, breach-duration: 1s,"
        " cool-down: 1s}\n"
    )
    manifest = platform.write_hello_app("surge", instances=1, extra=policy)
    platform.cli("push", "-f", str(manifest))
    platform.cli("push", "-f", str(manifest), "--canary", "50", "--no-rollback")
    assert by_revision(platform, "surge") == Counter({1: 1, 2: 1})  # one of each, not 1 + 1 more
    url = f"{platform.router}/surge/sleep?s=0.3"
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    most = [0]  # the most instances seen at once while the canary ran

    def load() -> None:
        end = time.monotonic() + 2 * MOST_SECONDS
        for _ in range(1_000):  # bounded: at most 1,000 requests a worker, 120 s, or until told
            if stop.is_set() or time.monotonic() > end:
                return
            statuses[get(url, timeout=60)[0]] += 1

    def split_is(expected: dict[int, int]) -> bool:
        seen = by_revision(platform, "surge")
        most[0] = max(most[0], sum(seen.values()))
        return seen == Counter(expected)

    workers = [threading.Thread(target=load) for _ in range(8)]  # 8 in progress want 4
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: split_is({1: 2, 2: 2}), what="both revisions to scale out to 2 each")
        platform.cli("canary", "surge", "--weight", "25")  # a step: re-split, same count
        eventually(lambda: split_is({1: 3, 2: 1}), what="the re-split at 25 %")
        assert most[0] == 4  # max-instances holds for both revisions together
        promoted = platform.cli("canary", "surge", "promote").stdout
        assert "surge: revision 2 promoted: it takes every request" in promoted
        eventually(
            lambda: by_revision(platform, "surge") == Counter({2: 4}),
            what="the new revision to take the whole count",
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert set(statuses) == {200}, statuses  # not one failed request through the re-splits
    assert platform.app("surge")["instances"] == 4
    events = platform.client.call("GET", "/v1/apps/surge/events?limit=50")
    scaled = [e["details"] for e in events if e["kind"] == "scaled"]
    assert any(
        d["previous"] == 2 and d["instances"] == 4 and "per instance > 2" in d["reason"]
        for d in scaled
    ), scaled
    weights = [e["details"] for e in events if e["kind"] == "canary-weight"]
    assert (weights[-1]["instances"], weights[-1]["current_instances"]) == (1, 3)
