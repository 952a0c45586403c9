"""Secrets in apps' variables, stream and task URLs are sealed at rest, on every backend: what a
row holds is ciphertext; the platform unseals it only to start an instance or a step. Rows an
older Conveyor wrote in clear are sealed by the start-up fixes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.errors import StoreError
from conveyor.orchestrate.stream_secrets import hash_stored_tokens
from conveyor.orchestrate.task_secrets import seal_stored_tasks
from conveyor.store import schema
from conveyor.store.apps import AppRepository
from conveyor.store.registry import Registry
from conveyor.store.sealing import mask_sealed, seal_env, unseal_values
from conveyor.store.secrets import SecretBox
from conveyor.store.streams import StreamRepository
from conveyor.store.tasks import TaskRepository

PASSWORD = "pw-7c2e-s3aled"
URL = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/test"


def _dump(registry: Registry) -> str:
    """Every row of every table this test writes, as text."""
    tables = (
        schema.platform_revisions,
        schema.platform_streams,
        schema.platform_stream_versions,
        schema.task_definitions,
        schema.task_executions,
        schema.task_schedules,
    )
    with registry.transaction() as conn:
        rows = [dict(row) for table in tables for row in conn.execute(sa.select(table)).mappings()]
    return json.dumps(rows, default=str)


def test_variables_named_as_secrets_and_url_passwords_are_sealed_and_given_back_whole(
    tmp_path: Path,
) -> None:
    box = SecretBox(tmp_path / "secrets.key")
    env = {"DB_PASSWORD": "p@ss:w/rd", "DATABASE_URL": URL, "api_token": "t", "PORT": "8080"}
    kept = seal_env(box, env)
    assert kept["PORT"] == "8080"
    assert PASSWORD not in json.dumps(kept)
    assert "p@ss:w/rd" not in json.dumps(kept)
    assert kept["DATABASE_URL"].startswith("postgresql+psycopg://postgres:sealed:v1:")
    assert kept["DATABASE_URL"].endswith("@127.0.0.1:5432/test")
    assert seal_env(box, kept) == kept  # sealed once
    assert unseal_values(box, kept) == env
    assert (
        mask_sealed(kept["DATABASE_URL"]) == "postgresql+psycopg://postgres:***@127.0.0.1:5432/test"
    )
    other = SecretBox(tmp_path / "other.key")
    other.seal_text("x")  # another home's key
    with pytest.raises(StoreError, match="cannot be opened with the key"):
        unseal_values(other, kept)


def test_rows_kept_in_clear_are_sealed_at_start_up(registry: Registry, tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secrets.key")
    clear, sealed = AppRepository(registry), AppRepository(registry, box)  # before, now
    streams, tasks = StreamRepository(registry), TaskRepository(registry)
    definition = f"time | sink: sql --url={URL} --table=ticks"
    streams.create("old", definition)
    streams.add_version(
        "old",
        definition=definition,
        properties={"app.sink.url": URL},
        binder="embedded",
        description="deploy",
    )
    launch = {"app": "sql", "options": {"url": URL, "table": "ticks"}}
    clear.save_app("old-sink", state="started", instances=1, revision=1)
    spec = {"kind": "stream", "options": {"stream_app": launch, "stream": "old"}}
    clear.add_revision("old-sink", description="push", spec=spec, files=None, droplet=None)
    web = {"kind": "command", "command": "python app.py", "env": {"DB_PASSWORD": PASSWORD}}
    clear.save_app("web", state="started", instances=1, revision=1)
    clear.add_revision("web", description="push", spec=web, files=None, droplet=None)
    tasks.create("load", f"sql --url='{URL}' --file=q.sql")
    doc = {"id": "e1", "task": "load", "state": "COMPLETE", "started_at": 1.0}
    doc |= {"definition": f"sql --url='{URL}' --file=q.sql", "params": {}, "properties": {}}
    tasks.save_execution(doc | {"steps": [{"name": "sql", "params": {"url": URL}}]})
    every = {"name": "every", "task": "load", "params": {}, "properties": {"app.sql.url": URL}}
    tasks.save_schedule(every, new=True)
    assert PASSWORD in _dump(registry)

    assert sealed.seal_stored_env() == 1
    assert hash_stored_tokens(sealed, streams) == 3
    assert seal_stored_tasks(box, tasks) == 3
    assert PASSWORD not in _dump(registry)
    assert unseal_values(box, streams.stream("old").definition) == definition
    (version,) = streams.versions("old")
    assert unseal_values(box, version.properties) == {"app.sink.url": URL}
    assert unseal_values(box, sealed.revision("old-sink", 1).spec) == spec
    assert unseal_values(box, sealed.revision("web", 1).spec) == web
    assert unseal_values(box, tasks.definition("load")) == f"sql --url='{URL}' --file=q.sql"
    assert unseal_values(box, tasks.execution("e1")["steps"][0]["params"]) == {"url": URL}
    assert unseal_values(box, tasks.schedule("every")["properties"]) == {"app.sql.url": URL}
    # once is enough: nothing left in clear
    assert (sealed.seal_stored_env(), hash_stored_tokens(sealed, streams)) == (0, 0)
    assert seal_stored_tasks(box, tasks) == 0


def test_a_new_revision_keeps_its_secret_variables_sealed(
    registry: Registry, tmp_path: Path
) -> None:
    apps = AppRepository(registry, SecretBox(tmp_path / "secrets.key"))
    apps.save_app("web", state="stopped", instances=1, revision=0)
    env = {"AWS_SECRET_ACCESS_KEY": PASSWORD, "LOG_LEVEL": "debug"}
    spec = {"kind": "command", "command": "python app.py", "env": env}
    kept = apps.add_revision("web", description="push", spec=spec, files=None, droplet=None)
    assert PASSWORD not in _dump(registry)
    assert kept.spec["env"]["LOG_LEVEL"] == "debug"
    assert unseal_values(apps.secrets, apps.revision("web", 1).spec["env"]) == env
