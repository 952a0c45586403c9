"""``conveyor down`` from the very process that started the platform (as a script or a test
does): the platform exits as a child not yet reaped, and ``down`` must see it has stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.config import get_settings
from tests.waiting import eventually

from .control import running_platform

pytestmark = pytest.mark.slow


def test_down_from_the_platforms_parent_returns_once_everything_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_platform(tmp_path) as platform:
        platform.cli("push", "-f", str(platform.write_hello_app("hi", instances=1)))
        eventually(lambda: platform.app("hi")["running"] == 1, what="hi to be running")
        (pid,) = {i["pid"] for i in platform.app("hi")["instances_detail"]}
        env = platform.env()
        for key in ("CONVEYOR_DATABASE_URL", "CONVEYOR_ARTIFACT_ROOT"):
            monkeypatch.delenv(key, raising=False)
        for key in ("CONVEYOR_HOME", "CONVEYOR_API", "CONVEYOR_ROUTER"):
            monkeypatch.setenv(key, env[key])
        get_settings.cache_clear()
        try:
            # The platform is this process's child: once it exits it stays a zombie (its pid
            # still "exists") until we reap it, which `down` must not wait for.
            result = CliRunner().invoke(cli, ["down", "--wait", "30"])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "Platform stopped."
        assert platform.process is not None
        assert platform.process.poll() == 0  # it had exited, and cleanly
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
        assert "not running" in platform.cli("status", check=False).stderr


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
