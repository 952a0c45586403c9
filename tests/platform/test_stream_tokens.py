"""A stream deployed before the registry kept tokens hashed: its rows (stream, versions, the
platform apps' revisions) held the http source's --auth-token in clear. The platform rewrites
them as it starts; the source still takes the right token and refuses others."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.waiting import eventually

from .control import running_platform
from .leaks import files_holding, post_status

pytestmark = pytest.mark.slow

#: Every registry column a stream's token was kept in before.
_COLUMNS = (
    ("platform_streams", "definition"),
    ("platform_stream_versions", "definition"),
    ("platform_stream_versions", "properties"),
    ("platform_revisions", "spec"),
)


def _back_to_clear(database: Path, token: str) -> None:
    """The registry as an older Conveyor left it: the token where its hash is now."""
    with sqlite3.connect(database) as db:
        (definition,) = db.execute("SELECT definition FROM platform_streams").fetchone()
        match = re.search(r"--auth-token=(\S+)", definition)
        assert match is not None, definition
        assert match.group(1).startswith("scrypt$"), definition
        for table, column in _COLUMNS:
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (match[1], token))
    db.close()


def test_a_token_kept_in_clear_is_hashed_when_the_platform_starts(tmp_path: Path) -> None:
    token = "tok-legacy-7f1d2c-in-clear"
    with running_platform(tmp_path) as platform:
        definition = f"http --path=/old --auth-token={token} | log"
        platform.cli("stream", "create", "old", "--definition", definition)
        platform.cli("stream", "deploy", "old", "--properties", f"app.http.auth-token={token}")
        platform.stop()
        database = platform.home / "registry.db"
        _back_to_clear(database, token)
        assert files_holding(platform.home, token) == [str(database)]

        platform.start()
        url = f"{platform.router}/old"
        eventually(lambda: post_status(url, f"Bearer {token}") == 202, what="the right token")
        assert post_status(url, "Bearer tok-legacy-wrong") == 401
        shown = platform.cli("stream", "info", "old", "--json").stdout
        assert json.loads(shown)["status"] == "deployed"
        assert token not in shown + platform.cli("stream", "history", "old").stdout
        platform.stop()  # the registry's last connection closes: its WAL is folded in
    assert files_holding(tmp_path, token) == []
