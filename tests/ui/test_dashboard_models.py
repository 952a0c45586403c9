"""The dashboard's Models and Lineage pages over HTTP: what they show, escape and refuse."""

from __future__ import annotations

import httpx

from conveyor.store.apps import AppRepository
from conveyor.store.models import ModelRepository
from conveyor.store.registry import Registry
from conveyor.store.requestlog import RequestLogWriter
from tests.platform.control import Platform
from tests.ui.dashboard import XSS, csrf_of, record_run, registered_model


def test_models_are_listed_with_versions_aliases_and_escaped_tags(
    platform: Platform, client: httpx.Client
) -> None:
    registered_model(platform, "listed", description=XSS)
    page = client.get("/ui/models")
    assert page.status_code == 200
    assert '<a href="/ui/models/listed">listed</a>' in page.text
    assert "@champion → 1" in page.text
    assert "team=&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert XSS not in page.text
    assert 'class="active">Models' in page.text


def test_a_model_page_links_each_version_to_its_run_and_its_lineage(
    platform: Platform, client: httpx.Client
) -> None:
    _prep, first, second = registered_model(platform, "shown")
    page = client.get("/ui/models/shown").text
    assert f'href="/ui/runs/{first}"' in page
    assert f'href="/ui/runs/{second}"' in page
    assert "age int64 → label int64 (classification)" in page
    assert "age float64, sex object → label int64" in page
    assert 'href="/ui/lineage?ref=models:/shown/2"' in page
    missing = client.get("/ui/models/nope")
    assert missing.status_code == 404
    assert "no registered model named &#39;nope&#39;" in missing.text


def test_an_alias_moves_by_post_and_a_signature_change_needs_force(
    platform: Platform, client: httpx.Client
) -> None:
    registered_model(platform, "moved")
    csrf = csrf_of(client.get("/ui/models/moved").text)
    forged = client.post("/ui/models/moved/alias", data={"alias": "champion", "version": "2"})
    assert forged.status_code == 403

    refused = client.post(
        "/ui/models/moved/alias", data={"csrf": csrf, "alias": "champion", "version": "2"}
    )
    assert refused.status_code == 303
    page = client.get("/ui/models/moved").text
    assert "whose signature differs from version 2&#39;s" in page
    assert "input &#39;sex&#39; added" in page
    assert "@champion → version 1" in page  # not moved

    forced = {"csrf": csrf, "alias": "champion", "version": "2", "force": "1"}
    client.post("/ui/models/moved/alias", data=forced)
    page = client.get("/ui/models/moved").text
    assert "Alias champion now points at version 2 (was version 1)" in page
    assert "@champion → version 2" in page

    client.post("/ui/models/moved/alias", data={"csrf": csrf, "alias": "x y", "version": "1"})
    assert "alias &#39;x y&#39; is not valid" in client.get("/ui/models/moved").text


def test_a_run_page_lists_the_models_it_saved_their_versions_and_apps(
    platform: Platform, client: httpx.Client
) -> None:
    _prep, first, _second = registered_model(platform, "saved")
    with Registry.from_settings(platform.settings) as registry:  # as a push of @champion leaves it
        apps = AppRepository(registry)
        apps.save_app("saved-app", state="stopped", instances=1, revision=1)
        droplet = {"name": "saved", "version": 1, "run_id": first}
        spec = {"kind": "model", "model": "models:/saved@champion"}
        apps.add_revision("saved-app", description="push", spec=spec, files=None, droplet=droplet)
    model = client.get("/ui/models/saved").text
    served = model.split('id="v1"', 1)[1].split("</tr>", 1)[0]
    assert '<a href="/ui/apps/saved-app">saved-app rev 1</a>' in served
    assert "saved-app" not in model.split('id="v2"', 1)[1].split("</tr>", 1)[0]
    page = client.get(f"/ui/runs/{first}").text
    assert "Models it saved" in page
    assert '<a href="/ui/models/saved#v1">saved version 1</a>' in page
    assert '<a href="/ui/apps/saved-app">saved-app revision 1</a>' in page
    assert f'href="/ui/lineage?ref=run:{first}/model"' in page
    assert f'href="/ui/lineage?ref=run:{first}"' in page


def test_lineage_of_a_model_version_is_drawn_with_links(
    platform: Platform, client: httpx.Client
) -> None:
    prep, first, _second = registered_model(platform, "traced")
    page = client.get("/ui/lineage", params={"ref": "models:/traced@champion"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "<svg" in html
    for node in ("model-version:traced/1", f"run:{first}", f"run:{prep}"):
        assert f'data-node="{node}"' in html
    assert f'<a href="/ui/runs/{prep}">' in html  # the run that made the training data
    assert '<a href="/ui/models/traced#v1">' in html
    for relation in ("registered", "saved", "wrote", "read"):  # the edges, listed too
        assert f"<td>{relation}</td>" in html


def test_lineage_from_a_request_id_reaches_the_training_run(
    platform: Platform, client: httpx.Client
) -> None:
    _prep, first, _second = registered_model(platform, "asked")
    shown = client.get("/ui/models/asked").text
    digest = shown.split(f'href="/ui/runs/{first}"', 1)[1].split('class="mono">', 1)[1][:23]
    with Registry.from_settings(platform.settings) as registry:
        full = ModelRepository(registry).version("asked", 1).digest
    assert full.startswith(digest)
    writer = RequestLogWriter(
        platform.settings.request_log_root / "asked", {"model": "asked", "digest": full}
    )
    writer.record("req-ui-0001")
    writer.close()
    html = client.get("/ui/lineage", params={"ref": "req-ui-0001"}).text
    assert 'data-node="request:req-ui-0001"' in html
    assert f'data-node="run:{first}"' in html


def test_lineage_labels_are_escaped(platform: Platform, client: httpx.Client) -> None:
    run_id = record_run(platform, XSS, {}, {})
    page = client.get("/ui/lineage", params={"ref": f"run:{run_id}"})
    assert page.status_code == 200
    assert f"run {run_id[:12]} &lt;script&gt;" in page.text
    assert XSS not in page.text


def test_lineage_of_what_names_nothing_says_so_escaped(client: httpx.Client) -> None:
    page = client.get("/ui/lineage", params={"ref": XSS})
    assert page.status_code == 404
    assert "names nothing Conveyor recorded" in page.text
    assert XSS not in page.text
    unknown = client.get("/ui/lineage", params={"ref": "models:/nobody/1"})
    assert unknown.status_code == 404
    assert "no registered model named &#39;nobody&#39;" in unknown.text
    # a path is never read from a page: no probing the platform's files
    assert client.get("/ui/lineage", params={"ref": "/etc/passwd"}).status_code == 404
    empty = client.get("/ui/lineage")
    assert empty.status_code == 200
    assert 'id="ref"' in empty.text
