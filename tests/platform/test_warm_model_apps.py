"""A scikit-learn model app on a real platform starts its next instance from a warm spare.

The spare is started through the same isolated spawner as any instance; here
the instance it became is checked from the host, through /proc: it serves
predictions, runs in its own mount namespace where the platform's token is
not there, as the app's uid (root platform), with the app's environment and
folder, like a cold-started instance of the same app; after ``conveyor down``
no process of the app is left, zombie or running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.platform.isolation import app_uid
from tests.waiting import eventually

from .control import Platform

pytestmark = pytest.mark.slow

ROOT = os.geteuid() == 0
PLATFORM_VARIABLES = ("CONVEYOR_HOME", "CONVEYOR_API_TOKEN", "CONVEYOR_DATABASE_URL")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = _platform(tmp_path_factory.mktemp("warm"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _platform(root: Path) -> Platform:
    """A platform (not started yet) that trusts the gradient-boosting model's tree type."""
    pytest.importorskip("sklearn")
    (root / "project").mkdir()
    return Platform(
        home=root / "home",
        project=root / "project",
        extra_env={"CONVEYOR_TRUSTED_TYPES": "sklearn.tree._tree.Tree"},
    )


def _model_app(folder: Path) -> Path:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    x, y = make_classification(n_samples=200, n_features=4, random_state=0)
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(x, y)
    folder.mkdir()
    save(model, folder / "gb.skops", x[:5])
    manifest = folder / "conveyor.yml"
    manifest.write_text(
        "applications:\n  - name: gb\n    model: gb.skops\n    instances: 1\n    memory: 512M\n"
    )
    return manifest


def _processes() -> dict[int, tuple[int, bytes, bytes]]:
    """Every process: pid -> (parent pid, command line, initial environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            found[int(entry.name)] = (
                int(stat[stat.rfind(b")") + 2 :].split()[1]),
                (entry / "cmdline").read_bytes(),
                (entry / "environ").read_bytes(),
            )
        except (OSError, ValueError):
            continue
    return found


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _server_under(wrapper: int) -> int | None:
    """The ``conveyor serve`` process an instance's wrapper runs (its sandbox's app)."""
    table = _processes()
    for pid, (_parent, cmdline, _env) in table.items():
        if b"\0conveyor\0serve\0" not in cmdline:
            continue
        ancestor = pid
        while ancestor in table and ancestor > 1:
            if ancestor == wrapper:
                return pid
            ancestor = table[ancestor][0]
    return None


def _ours(platform: Platform, env: bytes) -> bool:
    """Whether a process's environment is one of gb's on ``platform`` (not another test's)."""
    folder = platform.settings.platform_dir / "requests" / "gb"
    return f"CONVEYOR_REQUEST_LOG_DIR={folder}\0".encode() in env


def _spare_wrapper(platform: Platform) -> int | None:
    """The outermost process of the app's spare (set up like an instance, before it is one)."""
    table = _processes()
    for pid, (parent, _cmdline, env) in table.items():
        ours = b"CONVEYOR_WARM_SPARE=" in env and _ours(platform, env)
        if ours and (parent not in table or b"CONVEYOR_WARM_SPARE=" not in table[parent][2]):
            return pid
    return None


def _predict(platform: Platform) -> int:
    import urllib.error
    import urllib.request

    body = json.dumps([{f"x{i}": 0.5 for i in range(4)}]).encode()
    request = urllib.request.Request(
        f"{platform.router}/gb/predict", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def _view(server: int) -> dict[str, object]:
    """What isolation an app process got, as the host sees it."""
    status = Path(f"/proc/{server}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    env = _environ(server)
    return {
        "uid": int(uid),
        "mount namespace differs": os.readlink(f"/proc/{server}/ns/mnt")
        != os.readlink("/proc/self/ns/mnt"),
        "pid namespace differs": os.readlink(f"/proc/{server}/ns/pid")
        != os.readlink("/proc/self/ns/pid"),
        "cwd": os.readlink(f"/proc/{server}/cwd"),
        "platform variables": sorted(k for k in env if k in PLATFORM_VARIABLES),
        "app": env.get("CONVEYOR_APP"),
    }


def test_the_next_instance_comes_from_the_spare_isolated_like_a_cold_one(
    platform: Platform,
) -> None:
    platform.cli("push", "-f", str(_model_app(platform.project / "gb")))
    assert _predict(platform) == 200
    [cold] = platform.app("gb")["instances_detail"]
    spare = eventually(lambda: _spare_wrapper(platform), what="a warm spare of gb")
    eventually(lambda: _server_under(spare), what="the spare's conveyor serve")
    _check_the_spare_is_shown(platform, spare)

    platform.cli("scale", "gb", "-i", "2")
    [second] = eventually(
        lambda: [
            i
            for i in platform.app("gb")["instances_detail"]
            if i["index"] == 1 and i["state"] == "RUNNING"
        ],
        what="the second instance running",
    )
    assert second["pid"] == spare  # the spare became the instance
    # What `conveyor app` says of its isolation: the same as the cold one's, memory limit too.
    assert second["isolation"] == cold["isolation"]
    assert "memory" in second["isolation"]
    for _ in range(4):
        assert _predict(platform) == 200

    cold_server, warm_server = _server_under(cold["pid"]), _server_under(spare)
    assert cold_server is not None
    assert warm_server is not None
    warm, reference = _view(warm_server), _view(cold_server)
    assert warm == reference
    assert warm["mount namespace differs"]
    assert warm["pid namespace differs"]
    assert warm["platform variables"] == []
    if "cgroup" in second["isolation"]:  # a memory cgroup of its own, not the cold one's
        assert (
            Path(f"/proc/{warm_server}/cgroup").read_text()
            != Path(f"/proc/{cold_server}/cgroup").read_text()
        )
    if ROOT:
        assert warm["uid"] == app_uid("gb")
        token = platform.settings.platform_dir / "token"
        assert token.exists()
        # The instance's own view of the file system: the platform's token is not in it.
        assert not Path(f"/proc/{warm_server}/root{token}").exists()

    seen = [pid for pid, (_p, _c, env) in _processes().items() if _ours(platform, env)]
    assert len(seen) >= 6  # two instances and the next spare, each a wrapper and more
    assert platform.process is not None
    down = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "down"],
        env=platform.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    platform.process.wait(timeout=120)  # reaped here, so `down` sees it gone
    said, _ = down.communicate(timeout=120)
    assert (down.returncode, said.strip()) == (0, "Platform stopped.")
    left = [pid for pid in seen if Path(f"/proc/{pid}").exists()]
    assert left == [], f"processes of gb left after the platform stopped: {left}"


def _check_the_spare_is_shown(platform: Platform, spare: int) -> None:
    """`conveyor app`, the API and the dashboard show the spare and the memory it holds."""
    from tests.ui.dashboard import logged_in

    shown = eventually(
        lambda: (s := platform.app("gb")["warm_spare"]) and s["ready"] and s, what="spare ready"
    )
    assert shown["pid"] == spare
    assert shown["memory"] > 10 * 1024 * 1024  # a process that loaded scikit-learn and a model
    said = platform.cli("app", "gb").stdout
    line = next(x for x in said.splitlines() if x.startswith("warm spare:"))
    assert re.match(rf"warm spare: pid {spare}, \d+M resident, model loaded ", line), line
    assert "CONVEYOR_PREFORK=0" in said
    client = logged_in(platform)
    try:
        page = client.get("/ui/apps/gb/instances")
    finally:
        client.close()
    assert page.status_code == 200
    assert f"Warm spare: pid {spare}," in page.text


def test_a_spare_left_by_a_killed_platform_is_stopped_when_it_starts_again(
    tmp_path: Path,
) -> None:
    platform = _platform(tmp_path)
    platform.start()
    try:
        platform.cli("push", "-f", str(_model_app(platform.project / "gb")))
        spare = eventually(lambda: _spare_wrapper(platform), what="a warm spare of gb")
        assert platform.process is not None
        platform.process.kill()  # the platform dies; its instances and spare do not
        platform.process.wait()
        assert Path(f"/proc/{spare}").exists()
        platform.start()
        eventually(lambda: not Path(f"/proc/{spare}").exists(), what="the old spare to stop")
        eventually(lambda: _predict(platform) == 200, what="gb to answer after the restart")
    finally:
        platform.stop()
