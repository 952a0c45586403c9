"""Secrets at rest on a running platform: a sql sink's URL password and secret variables set
with set-env (by name, or with --secret) reach the app, while the registry's files (database and
WAL) never hold them and nothing shown (CLI, API) does."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.waiting import eventually

from .control import Platform, get, running_platform
from .leaks import files_holding

pytestmark = pytest.mark.slow


def _rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return 0
            return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())
    finally:
        engine.dispose()


def test_a_sql_sink_writes_with_its_url_password_which_no_registry_file_holds(
    tmp_path: Path, postgres_url: str
) -> None:
    password = "pw-sink-0b7a-sealed"  # trust auth: PostgreSQL takes any password here
    url = postgres_url.replace("postgres@", f"postgres:{password}@", 1)
    with running_platform(tmp_path) as platform:
        definition = f"time --interval=0.2 | sql --url={url} --table=ticks"
        created = platform.cli("stream", "create", "ticks", "--definition", definition).stdout
        platform.cli("stream", "deploy", "ticks")
        eventually(lambda: _rows(postgres_url, "ticks") >= 3, what="rows in PostgreSQL")
        shown = created + "".join(
            platform.cli(*command).stdout
            for command in (
                ("stream", "list"),
                ("stream", "info", "ticks", "--json"),
                ("stream", "history", "ticks"),
                ("apps",),
            )
        )
        assert "postgres:***@" in shown
        assert password not in shown
        database = platform.home / "registry.db"
        assert database.is_file()
        assert files_holding(platform.home, password) == []  # registry.db, its WAL, logs

        platform.stop()
        platform.start()  # the sink starts again from the sealed row
        before = _rows(postgres_url, "ticks")
        eventually(lambda: _rows(postgres_url, "ticks") > before, what="rows after a restart")
        platform.cli("stream", "undeploy", "ticks")
    assert files_holding(tmp_path, password) == []


def _push_with(platform: Platform, app: str, *variables: tuple[str, ...]) -> None:
    """Push the hello app as ``app``, set each ``(NAME, VALUE, options...)``, restart it."""
    platform.cli("push", "-f", str(platform.write_hello_app(app, instances=1)))
    for variable in variables:
        platform.cli("set-env", app, *variable)
    platform.cli("restart", app)


def test_a_secret_variable_set_with_set_env_reaches_the_app_but_not_the_registry(
    tmp_path: Path,
) -> None:
    secret = "pw-env-94d1-sealed"
    with running_platform(tmp_path) as platform:
        _push_with(
            platform,
            "keeper",
            ("DB_PASSWORD", secret),
            ("SIGNING_SALT", secret + "-salt", "--secret"),
            ("LOG_LEVEL", "debug"),
        )
        given = {"DB_PASSWORD": secret, "SIGNING_SALT": secret + "-salt", "LOG_LEVEL": "debug"}
        for key, value in given.items():
            _status, body = get(f"{platform.router}/keeper/env?name={key}")
            assert body["value"] == value, key
        shown = platform.cli("app", "keeper").stdout + json.dumps(platform.app("keeper"))
        shown += (
            platform.cli("revisions", "keeper").stdout + platform.cli("events", "keeper").stdout
        )
        assert "DB_PASSWORD" in platform.cli("revisions", "keeper").stdout
        assert secret not in shown
        assert files_holding(platform.home, secret) == []


def test_a_secret_variable_kept_in_clear_before_is_sealed_when_the_platform_starts(
    tmp_path: Path,
) -> None:
    secret = "pw-old-row-2f8e"
    with running_platform(tmp_path) as platform:
        _push_with(platform, "legacy", ("API_TOKEN", secret))
        platform.stop()
        database = platform.home / "registry.db"
        with sqlite3.connect(database) as db:  # as an older Conveyor left it: in clear
            for number, spec in db.execute(
                "SELECT number, spec FROM platform_revisions"
            ).fetchall():
                value = json.loads(spec)
                if "API_TOKEN" in value.get("env", {}):
                    value["env"]["API_TOKEN"] = secret
                    db.execute(
                        "UPDATE platform_revisions SET spec = ? WHERE number = ?",
                        (json.dumps(value), number),
                    )
        db.close()
        assert files_holding(platform.home, secret) == [str(database)]

        platform.start()
        url = f"{platform.router}/legacy/env?name=API_TOKEN"

        def given() -> object:
            status, body = get(url)
            return body.get("value") if status == 200 else None

        eventually(lambda: given() == secret, what="the variable after the start")
        platform.stop()  # the registry's last connection closes: its WAL is folded in
    assert files_holding(tmp_path, secret) == []
