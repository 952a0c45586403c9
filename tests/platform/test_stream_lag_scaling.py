"""A stream app scales on its consumer lag on a real platform, and no message is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.waiting import eventually

from .control import Platform
from .test_streams_on_platform import _lines, _post, files, platform, roots

pytestmark = pytest.mark.slow
__all__ = ["files", "platform", "roots"]  # the fixtures this module shares


def test_a_backlog_scales_the_consumer_out_then_in_and_every_message_arrives(
    platform: Platform, files: Path
) -> None:
    folder = files / "slow"
    folder.mkdir()
    (folder / "slow.py").write_text(
        "import time\n\ndef handle(payload):\n    time.sleep(0.02)\n    return payload\n"
    )
    platform.cli(
        "catalog", "register", "--name", "slowcopy", "--uri", "python:slow:handle",
        "--path", str(folder),
    )  # fmt: skip
    out = files / "out.jsonl"
    platform.cli(
        "stream", "create", "backlog", "--definition",
        f"http --path=/backlog | slowcopy | file --path={out}",
    )  # fmt: skip
    properties = (
        "deployer.slowcopy.autoscale.lag-target=100,deployer.slowcopy.max-count=3,"
        "deployer.slowcopy.autoscale.breach-duration=1s,deployer.slowcopy.autoscale.cool-down=2s"
    )
    platform.cli("stream", "deploy", "backlog", "--properties", properties)
    for start in range(0, 900, 300):
        _post(f"{platform.router}/backlog", [{"n": n} for n in range(start, start + 300)])

    eventually(lambda: platform.app("backlog-slowcopy")["running"] == 3, what="3 consumers")
    eventually(lambda: len({r["n"] for r in _lines(out)}) == 900, what="every message")
    assert {r["n"] for r in _lines(out)} == set(range(900))  # at least once: none lost
    eventually(lambda: platform.app("backlog-slowcopy")["instances"] == 1, what="back to 1")
    events = platform.cli("events", "backlog-slowcopy").stdout
    assert "1 -> 3: consumer lag" in events
    platform.cli("stream", "destroy", "backlog")
    platform.cli("catalog", "unregister", "slowcopy")
