"""Autoscaling end to end: a real platform, real instances, a bounded load through the router."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ui.dashboard import logged_in
from tests.waiting import eventually

from .control import Platform, get, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("autoscaling")) as running:
        yield running


def _counts(platform: Platform, name: str) -> tuple[int, int]:
    app = platform.app(name)
    return app["instances"], app["running"]


def test_an_idle_app_scales_to_zero_and_its_next_requests_are_all_answered(
    platform: Platform,
) -> None:
    policy = "    autoscaling: {min-instances: 0, max-instances: 2, idle-period: 1s}\n"
    platform.cli("push", "-f", str(platform.write_hello_app("sleepy", instances=1, extra=policy)))
    eventually(lambda: _counts(platform, "sleepy") == (0, 0), what="sleepy to scale to zero")

    url = f"{platform.router}/sleepy/"
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _i: get(url, timeout=60), range(5)))
    assert [status for status, _ in answers] == [200] * 5
    assert _counts(platform, "sleepy")[0] == 1
    events = platform.cli("events", "sleepy").stdout
    assert "scaled  1 -> 0: no request for " in events
    assert "scaled  0 -> 1: a request arrived while it had no instance" in events
    assert "reason=" not in events
    shown = platform.cli("app", "sleepy").stdout
    assert "autoscaling: 0-2 instances; cool-down 60 s; to zero after 1 s idle" in shown
    assert "0 -> 1: a request arrived" in shown  # among its recent events
    dashboard = logged_in(platform)
    try:
        page = dashboard.get("/ui/apps/sleepy").text
    finally:
        dashboard.close()
    assert "autoscaling: 0-2 instances; cool-down 60 s; to zero after 1 s idle" in page


def test_a_step_load_scales_out_and_in_after_it_without_a_failed_request(
    platform: Platform,
) -> None:
    policy = (
        "    autoscaling:\n"
        "      {max-instances: 3, target-ongoing-requests: 2, breach-duration: 1s,"
        " cool-down: 1s}\n"
    )
    platform.cli("push", "-f", str(platform.write_hello_app("busy", instances=1, extra=policy)))
    url = f"{platform.router}/busy/sleep?s=0.3"
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        for _ in range(2_000):  # bounded: at most 2,000 requests a worker, or until told
            if stop.is_set():
                return
            statuses[get(url, timeout=60)[0]] += 1

    workers = [threading.Thread(target=load) for _ in range(6)]
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: _counts(platform, "busy") == (3, 3), what="busy to scale out to 3")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    eventually(lambda: _counts(platform, "busy") == (1, 1), what="busy to scale back in to 1")
    assert set(statuses) == {200}
    events = platform.cli("events", "busy").stdout
    assert "per instance > 2 for " in events
    assert "per instance < 2 for " in events


def test_a_scale_down_waits_for_the_requests_its_instances_are_answering(
    platform: Platform,
) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("draining", instances=2)))
    url = f"{platform.router}/draining/sleep?s=3"  # far longer than the 0.5 s drain
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(get, url, timeout=60) for _ in range(2)]  # one on each instance
        eventually(
            lambda: platform.app("draining")["load"]["ongoing"] == 2,
            what="both slow requests in flight",
        )
        assert "load:     2 request(s) in progress" in platform.cli("app", "draining").stdout
        platform.cli("scale", "draining", "-i", "1")
        assert [f.result()[0] for f in slow] == [200, 200]
    assert _counts(platform, "draining") == (1, 1)
