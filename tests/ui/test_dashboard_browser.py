"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Playwright never downloads a browser here: it launches the system's chromium.
Set CONVEYOR_UI_SCREENSHOTS=<folder> to save the main pages as PNGs (the
README's pictures come from ``CONVEYOR_UI_SCREENSHOTS=docs/screenshots``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.store.records import RunStatus
from tests.platform.control import Platform, get, running_platform
from tests.ui.dashboard import XSS, api_url, record_run, registered_model, tiny_png, token

CHROMIUM = shutil.which("chromium")
#: Generous: the machine is shared, and a page waits on a platform that stages apps.
WAIT_MS = 60_000


def _require_chromium() -> str:
    if CHROMIUM is not None:
        return CHROMIUM
    reason = "chromium is not installed (apt-get install chromium; .ci/services.sh does it)"
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and CONVEYOR_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    _require_chromium()
    with running_platform(tmp_path_factory.mktemp("dashboard-browser")) as running:
        _sample_runs(running)
        yield running


def _sample_runs(platform: Platform) -> None:
    """Runs like a small sweep leaves them, so the pages (and screenshots) have something."""
    start = time.time() - 3600
    for n, (trees, depth) in enumerate([(100, 4), (200, 6), (200, 8), (400, 8), (400, 12)]):
        auc = 0.81 + 0.02 * n - (0.03 if depth == 12 else 0)
        record_run(
            platform,
            f"churn-rf-{trees}-{depth}",
            {"n_estimators": trees, "max_depth": depth, "class_weight": "balanced"},
            {
                "auc": [auc - 0.1 + 0.1 * (1 - 0.7**s) for s in range(40)],
                "accuracy": [auc - 0.06],
                "log_loss": [0.52 - 0.03 * n],
            },
            started_at=start + 300 * n,
            experiment="churn",
            tags={"stage": "prod"} if n == 3 else None,
        )
    record_run(
        platform,
        "churn-gbm",
        {"learning_rate": 0.3},
        {},
        status=RunStatus.FAILED,
        started_at=start + 2000,
    )
    record_run(platform, XSS, {"note": XSS}, {"auc": [0.5]}, started_at=start + 2100)


@pytest.fixture(scope="module")
def browser(platform: Platform) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=_require_chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A logged-in page that records every request's URL, console errors and dialogs."""

    def __init__(self, browser: Any, platform: Platform) -> None:
        self.base = api_url(platform)
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", dialog)
        self.page.goto(self.base + "/ui/runs")  # not logged in: sent to the login page
        self.page.fill("#token", token(platform))
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/ui/")

    def foreign(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(self.base + "/")]

    def shot(self, name: str) -> None:
        folder = os.environ.get("CONVEYOR_UI_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


@pytest.fixture
def watched(browser: Any, platform: Platform) -> Iterator[Watched]:
    session = Watched(browser, platform)
    try:
        yield session
        assert session.foreign() == []  # nothing came from another origin
        assert session.errors == []  # no CSP violation, no script error
        assert session.dialogs == []  # no script a user wrote ever ran
    finally:
        session.context.close()


def test_every_page_is_reached_by_clicking(watched: Watched) -> None:
    page = watched.page
    assert page.locator("h1").inner_text() == "Overview"
    assert "churn-gbm" in page.locator("section:has-text('Failed recently')").inner_text()
    watched.shot("overview")
    page.click("header nav >> text=Runs")
    page.wait_for_url("**/ui/runs")
    page.click("th >> text=auc")  # sorted by the metric, best first
    page.wait_for_url("**/ui/runs?*sort=metric*")
    first = page.locator("tbody tr").first.inner_text()
    assert "churn-rf-400-8" in first
    watched.shot("runs")
    page.click("text=churn-rf-200-8 >> xpath=../td[2]/a")
    assert page.locator("h1").inner_text().startswith("churn-rf-200-8")
    assert page.locator("svg.spark").count() == 1  # auc's 40 points; one-point metrics have none
    watched.shot("run")
    page.click("header nav >> text=Apps")
    assert page.locator("h1").inner_text().startswith("Apps")
    page.click("header nav >> text=Streams")
    assert page.locator("h1").inner_text().startswith("Streams")


def test_two_runs_compared_side_by_side(watched: Watched) -> None:
    page = watched.page
    page.goto(watched.base + "/ui/runs?where=name+like+%27churn-rf-200%25%27")
    button = page.locator("form.compare-form button[type=submit]")
    assert button.is_disabled()
    for row in ("churn-rf-200-6", "churn-rf-200-8"):
        page.locator(f"tr:has-text('{row}') input[name=run]").check()
    assert button.inner_text() == "Compare 2 runs"
    button.click()
    page.wait_for_url("**/ui/compare?*")
    assert page.locator("tr.differs:has-text('max_depth')").count() >= 1
    assert page.locator("tr:not(.differs):has-text('n_estimators')").count() == 1
    assert "What runs diff says" in page.locator("h2").all_inner_texts()
    auc = page.locator("svg.chart[aria-label='history of auc for 2 runs']")
    assert auc.locator("polyline").count() == 2  # both histories on one chart
    watched.shot("compare")


def test_a_run_named_like_a_script_is_shown_as_text(watched: Watched) -> None:
    page = watched.page
    page.goto(watched.base + "/ui/runs?where=name+like+%27%25script%25%27")
    assert page.get_by_text(XSS).count() >= 1
    page.locator("tbody tr", has_text=XSS).locator("a").first.click()  # the run page too
    page.wait_for_url("**/ui/runs/*")
    assert page.locator("h1").inner_text().startswith(XSS)


def test_runs_searched_tagged_deleted_and_restored(watched: Watched) -> None:
    page = watched.page
    page.click("header nav >> text=Runs")
    page.fill("#where", "params.n_estimators >= 200 and metrics.auc > 0.855")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/ui/runs?where=*")
    names = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert sorted(names) == ["churn-rf-400-12", "churn-rf-400-8"]
    watched.shot("runs-search")
    page.fill("#where", "metrics.auc > 'high'")
    page.click("form.filters button[type=submit]")
    error = page.locator("pre.search-error").inner_text()
    assert "search error at position 14" in error
    assert error.splitlines()[-1].strip() == "^"
    # the page answered 400, which the browser reports; that is the only error
    assert [e for e in watched.errors if "400 (Bad Request)" in e] == watched.errors
    watched.errors.clear()

    page.goto(watched.base + "/ui/runs?where=name+%3D+%27churn-rf-100-4%27")
    page.locator("tbody a.mono").first.click()
    page.wait_for_url("**/ui/runs/*")
    page.fill("#tag-key", "reviewed")
    page.fill("#tag-value", "yes")
    page.click("form.tag-form >> text=Set tag")
    page.locator(".tags .tag", has_text="reviewed=yes").wait_for()
    page.get_by_role("button", name="Delete run").click()
    page.get_by_role("button", name="Restore").wait_for()
    assert page.locator("p.flash.error", has_text="hidden from the runs list").count() == 1
    page.get_by_role("button", name="Restore").click()
    page.get_by_role("button", name="Delete run").wait_for()  # live again
    page.goto(watched.base + "/ui/runs?where=tags.reviewed+%3D+%27yes%27")
    assert page.locator("tbody tr td:nth-child(3)").all_inner_texts() == ["churn-rf-100-4"]


def test_a_task_launched_from_its_drawn_graph(watched: Watched, platform: Platform) -> None:
    platform.client.call(
        "POST",
        "/v1/tasks",
        {
            "name": "nightly",
            "definition": "extract: timestamp && <fit: timestamp || score: timestamp> "
            "&& report: timestamp",
        },
    )
    page = watched.page
    page.click("header nav >> text=Tasks")
    page.click("text=nightly")
    page.wait_for_url("**/ui/tasks/nightly")
    graph = page.locator("svg[aria-label='task nightly']")
    assert graph.locator("g.step").count() == 4
    assert graph.locator("g.marker.split").count() == 1
    watched.shot("task")
    page.click("form.launch button[type=submit]")
    page.wait_for_url("**/ui/tasks/executions/*")
    # the page follows the execution by itself until it ends
    page.locator("h1 .badge", has_text="COMPLETED").wait_for(timeout=120_000)
    drawn = page.locator("svg g.step.COMPLETED")
    assert drawn.count() == 4
    assert page.locator("table.steps a.mono").count() == 4  # each step links to its run
    watched.shot("task-execution")


def test_log_tail_follows_an_app_and_a_revision_is_rolled_back(
    watched: Watched, platform: Platform
) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("greeter", instances=1)))
    platform.cli("set-env", "greeter", "GREETING", "hi")
    platform.cli("restart", "greeter")
    page = watched.page
    page.goto(watched.base + "/ui/apps")
    page.click("text=greeter")
    page.wait_for_url("**/ui/apps/greeter")
    page.locator(".tail-status", has_text="following").wait_for()
    router = platform.router
    for n in range(20):
        get(f"{router}/greeter/mark-{n}")
    # each request's access line arrives while the page follows, none lost
    page.locator(".tail .lines", has_text="GET /mark-19 ").wait_for()
    tail = page.locator(".tail .lines").inner_text()
    positions = [tail.index(f"GET /mark-{n} ") for n in range(20)]
    assert positions == sorted(positions)
    page.locator("#instances td", has_text="RUNNING").first.wait_for()
    watched.shot("app")
    page.click("button:has-text('Roll back to 1')")
    page.locator(".flash.ok").wait_for()
    assert "greeter" in page.locator(".flash.ok").inner_text()
    deployed = page.locator("tr:has(.badge.deployed) td").first.inner_text()
    assert deployed == "3"  # a rollback is a new revision with revision 1's configuration
    assert platform.app("greeter")["revision"] == 3


def test_a_stream_is_drawn_and_its_counters_move(watched: Watched, platform: Platform) -> None:
    from playwright.sync_api import expect

    platform.cli("stream", "create", "ticks", "--definition", "time --interval=0.1 | log")
    platform.cli("stream", "deploy", "ticks")
    page = watched.page
    page.goto(watched.base + "/ui/streams")
    page.click("text=ticks")
    page.wait_for_url("**/ui/streams/ticks")
    node = page.locator("#graph g.node.sink")
    assert page.locator("#graph g.node.source").count() == 1
    assert page.locator("#graph g.dest").count() == 1
    counts = node.locator("text.count").nth(1)
    first = counts.text_content()
    assert first is not None
    assert first.startswith("in ")
    # the graph polls: the log sink's input count grows while the page stays open
    expect(page.locator("#graph g.node.sink text.count").nth(1)).not_to_have_text(
        first, timeout=WAIT_MS
    )
    watched.shot("stream")


def test_models_to_a_model_to_its_lineage_by_clicking(watched: Watched, platform: Platform) -> None:
    prep, first, _second = registered_model(platform, "diagnosis", description="risk")
    page = watched.page
    page.click("header nav >> text=Models")
    page.wait_for_url("**/ui/models")
    assert "@champion → 1" in page.locator("tr:has-text('diagnosis')").inner_text()
    page.click("tbody >> text=diagnosis")
    page.wait_for_url("**/ui/models/diagnosis")
    assert page.locator("#v1").inner_text().startswith("1\t@champion")
    page.select_option("#alias-version", "2")
    page.click("form.alias-form button[type=submit]")
    refused = page.locator("p.flash.error").inner_text()
    assert "input 'sex' added" in refused
    watched.shot("model")
    page.locator("#v1 >> text=lineage").click()
    page.wait_for_url("**/ui/lineage?ref=**")
    graph = page.locator("div.lineage svg")
    assert graph.locator("g.lnode.root").get_attribute("data-node") == "model-version:diagnosis/1"
    assert graph.locator(f'g[data-node="run:{prep}"]').count() == 1  # it made the training data
    watched.shot("lineage")
    graph.locator(f'g[data-node="run:{first}"] a').click()  # the box is a link to the run
    page.wait_for_url(f"**/ui/runs/{first}")
    assert "diagnosis version 1" in page.locator("section.saved-models").inner_text()
    page.click("p.muted >> text=lineage")  # and back: the run's own lineage
    page.wait_for_url("**/ui/lineage?ref=run*")
    assert graph.locator("g.lnode.root").get_attribute("data-node") == f"run:{first}"
    page.fill("#ref", "no-such-thing")
    page.click("form.filters button[type=submit]")
    assert "names nothing Conveyor recorded" in page.locator("pre.lineage-error").inner_text()
    assert [e for e in watched.errors if "404 (Not Found)" in e] == watched.errors
    watched.errors.clear()


def test_a_runs_code_and_image_output_are_shown(
    watched: Watched, platform: Platform, tmp_path: Path
) -> None:
    from conveyor.repro.snapshot import take_snapshot
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.records import FileRecord

    store = ArtifactStore.from_settings(platform.settings)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "train.py").write_text(f"print('{XSS}')\n")
    code = take_snapshot(tmp_path, store, limit=10**6).to_json()
    png = tiny_png()
    plot = FileRecord("output", "roc.png", store.put_bytes(png), len(png))
    run_id = record_run(platform, "with-files", {}, {}, code=code, files=[plot])
    page = watched.page
    page.goto(f"{watched.base}/ui/runs/{run_id}")
    image = page.locator("figure.preview img")
    image.wait_for()
    # loaded from the store, same origin, allowed by the CSP
    page.wait_for_function("() => document.querySelector('figure.preview img').complete")
    assert image.evaluate("img => img.naturalWidth") == 1
    page.click("text=Browse the code snapshot")
    page.click("ul.tree >> text=train.py")
    assert page.locator("pre.code").inner_text().strip() == f"print('{XSS}')"
