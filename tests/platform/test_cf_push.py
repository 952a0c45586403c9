"""A Cloud Foundry app pushed as it is: manifest.yml, requirements.txt, a Procfile, VCAP_*."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .control import Platform, get, running_platform

pytestmark = pytest.mark.slow

# Reads its environment as the `cfenv` package does (AppEnv: VCAP_APPLICATION's name,
# space_name and uris, CF_INSTANCE_INDEX, PORT, and every service of VCAP_SERVICES).
FLASK_APP = """\
import json
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def environment():
    application = json.loads(os.getenv("VCAP_APPLICATION", "{}"))
    services = [s for group in json.loads(os.getenv("VCAP_SERVICES", "{}")).values() for s in group]
    return {
        "name": application.get("name"),
        "space": application.get("space_name"),
        "uris": application.get("uris"),
        "limits": application.get("limits"),
        "index": os.getenv("CF_INSTANCE_INDEX"),
        "guid": os.getenv("CF_INSTANCE_GUID"),
        "port": int(os.getenv("PORT")),
        "services": {s["name"]: s["credentials"] for s in services},
        "labels": [s["label"] for s in services],
    }


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
"""

MANIFEST = """\
---
applications:
- name: cf-flask
  buildpacks:
  - python_buildpack
  stack: cflinuxfs4
  memory: 256M
  disk_quota: 512M
  instances: 1
  timeout: 120
  health-check-type: http
  health-check-http-endpoint: /
  services:
  - name: cf-db
    parameters:
      pool: 5
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


def test_a_cf_flask_app_starts_as_pushed_and_reads_cf_environment(
    platform: Platform, tmp_path: Path
) -> None:
    folder = tmp_path / "cf-flask"
    folder.mkdir()
    (folder / "app.py").write_text(FLASK_APP)
    (folder / "requirements.txt").write_text("flask\n")
    (folder / "Procfile").write_text("web: python app.py\n")
    (folder / "manifest.yml").write_text(MANIFEST)
    platform.cli("create-service", "cf-db", "-p", '{"uri": "postgresql://db/cf"}')

    pushed = platform.cli("push", cwd=folder)  # no -f: CF's manifest.yml is found
    assert "ignored: buildpacks (Conveyor stages with uv), stack" in pushed.stderr
    assert "cf-flask: revision 1 running with 1 instance(s)" in pushed.stdout

    status, body = get(f"{platform.router}/cf-flask/")
    assert status == 200, body
    assert (body["name"], body["space"], body["index"]) == ("cf-flask", "conveyor", "0")
    assert body["uris"] == ["cf-flask.localhost"]
    assert body["limits"] == {"mem": 256, "disk": 512}
    assert body["services"] == {"cf-db": {"pool": 5, "uri": "postgresql://db/cf"}}
    assert body["labels"] == ["user-provided"]
    assert body["port"] == platform.app("cf-flask")["instances_detail"][0]["port"]
    assert len(body["guid"]) == 36
