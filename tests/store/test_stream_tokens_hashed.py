"""The start-up data fix on every backend: rows an older Conveyor wrote with an http source's
--auth-token in clear (stream, versions, stream apps' revisions) end up holding its hash."""

from __future__ import annotations

import json

from conveyor.orchestrate.stream_secrets import hash_stored_tokens
from conveyor.store.apps import AppRepository
from conveyor.store.registry import Registry
from conveyor.store.streams import StreamRepository
from conveyor.streams.token_hash import TokenCheck

TOKEN = "tok-old-row-31c9"


def test_clear_tokens_in_stream_rows_and_app_specs_become_hashes(registry: Registry) -> None:
    streams, apps = StreamRepository(registry), AppRepository(registry)
    definition = f"in: http --path=/in --auth-token={TOKEN} | log"
    streams.create("old", definition)
    streams.add_version(
        "old",
        definition=definition,
        properties={"app.in.auth-token": TOKEN, "app.in.path": "/in"},
        binder="embedded",
        description="deploy",
    )
    streams.set_status("old", "deployed", version=1)
    launch = {"app": "http", "options": {"path": "/in", "auth-token": TOKEN}}
    apps.save_app("old-in", state="started", instances=1, revision=1)
    spec = {"kind": "stream", "options": {"stream_app": launch, "stream": "old"}}
    apps.add_revision("old-in", description="push", spec=spec, files=None, droplet=None)
    apps.save_app("web", state="started", instances=1, revision=1)
    other = {"kind": "command", "command": "python app.py", "env": {"X": TOKEN}}
    apps.add_revision("web", description="push", spec=other, files=None, droplet=None)

    assert hash_stored_tokens(apps, streams) == 3
    (version,) = streams.versions("old")
    kept = [streams.stream("old").definition, version.definition, json.dumps(version.properties)]
    kept.append(json.dumps(apps.revision("old-in", 1).spec))
    assert not [text for text in kept if TOKEN in text]
    stored = apps.revision("old-in", 1).spec["options"]["stream_app"]["options"]
    assert TokenCheck(stored["auth-token"]).matches(TOKEN)
    assert TokenCheck(version.properties["app.in.auth-token"]).matches(TOKEN)
    assert version.properties["app.in.path"] == "/in"
    assert streams.stream("old").status == "deployed"
    assert apps.revision("web", 1).spec == other  # not a stream app: left as it is
    assert hash_stored_tokens(apps, streams) == 0  # once is enough
