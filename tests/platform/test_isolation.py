"""Pushed apps isolated from the platform and from each other, with real processes.

The platform side runs in its own process (``apps/isolation_driver.py``): as
this user, and — when the tests run as root — also as uid 65534 in a user
namespace where it owns its files, as a platform started by a developer on
a laptop does. Each check below succeeds for an app started without the
sandbox (the same user, the whole environment, one /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.errors import ConfigError
from conveyor.platform import Event, HealthCheck, InstanceSpec, InstanceState, Supervisor
from conveyor.platform.errors import SpawnError
from conveyor.platform.instance_env import instance_env
from conveyor.platform.isolation import (
    IsolatedSpawner,
    Isolation,
    IsolationUnavailable,
    Sandbox,
    app_uid,
)
from conveyor.platform.processes import SpawnRequest
from conveyor.platform.sandbox_paths import hidden_paths

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).parent / "apps" / "isolation_driver.py"
MIB = 1024 * 1024
#: Real processes on a loaded machine: generous, bounded.
SLOW = 120


def make_platform(root: Path) -> dict[str, Any]:
    """A platform home with a token, a registry and two apps' droplets; the driver's job."""
    home = root / "home"
    (home / "platform").mkdir(parents=True, mode=0o700)
    token = home / "platform" / "token"
    token.write_text("platform-token\n")
    token.chmod(0o600)
    (home / "registry.db").write_text("the registry\n")
    # The home of the user who runs the platform, with a key an app must not read.
    user = root / "user"
    (user / ".ssh").mkdir(parents=True, mode=0o700)
    (user / ".ssh" / "id_ed25519").write_text("private key\n")
    droplets = {}
    for app, file in (("a", "app.txt"), ("b", "secret.txt")):
        droplet = home / "platform" / "droplets" / app
        droplet.mkdir(parents=True)
        (droplet / file).write_text(f"{app}'s file\n")
        droplets[app] = str(droplet)
    return {"home": str(home), "user": str(user), "droplets": droplets, "memory_limit": 64 * MIB}


def run_driver(job: dict[str, Any], prefix: list[str]) -> dict[str, Any]:
    env = {**os.environ, "CONVEYOR_HOME": job["home"], "HOME": job["user"]}
    done = subprocess.run(
        [*prefix, sys.executable, str(DRIVER), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=SLOW,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def as_platform_user() -> list[str]:
    """Run the platform side as the user running the tests."""
    return []


def as_unprivileged_user() -> list[str]:
    """Run the platform side as uid 65534 owning its files (as a laptop user does)."""
    if os.geteuid() != 0:
        pytest.skip("the tests run unprivileged already: the other case covers it")
    unshare = shutil.which("unshare")
    prefix = [unshare or "unshare", "--user", "--map-user=65534", "--map-group=65534"]
    if unshare is None or subprocess.run([*prefix, "true"], check=False).returncode != 0:
        pytest.skip("user namespaces are not available here (util-linux unshare --user failed)")
    return prefix


@pytest.fixture(
    scope="module",
    params=[as_platform_user, as_unprivileged_user],
    ids=["platform-user", "unprivileged-user"],
)
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run of the driver: what app a could reach, how b stopped, how greedy died."""
    prefix = request.param()
    job = make_platform(tmp_path_factory.mktemp("platform"))
    # An unprivileged platform cannot make cgroups: prove the rlimit there.
    job["cgroups"] = request.param is as_platform_user
    return run_driver(job, prefix)


@pytest.mark.parametrize(
    "target", ["token", "registry", "b's droplet", "b's tmp", "platform environ", "user's key"]
)
def test_an_app_cannot_read_the_platform_or_another_app(report: Any, target: str) -> None:
    assert report["a"][f"read {target}"] in ("FileNotFoundError", "PermissionError")


@pytest.mark.parametrize("target", ["b", "b's app 0", "platform"])
def test_an_app_cannot_signal_another_app_or_the_platform(report: Any, target: str) -> None:
    assert report["a"][f"probe {target}"] in ("ProcessLookupError", "PermissionError")
    assert report["a"][f"terminate {target}"] in ("ProcessLookupError", "PermissionError")
    assert report["b lines"][0] == "ready"


def test_an_app_sees_none_of_the_platform_environment(report: Any) -> None:
    seen = report["a"]
    for name in ("CONVEYOR_API", "CONVEYOR_DATABASE_URL", "SHELL_SECRET"):
        assert seen[f"env {name}"] is None
    assert "CONVEYOR_HOME" not in seen["env keys"]
    assert set(seen["env keys"]) <= {
        "CONVEYOR_APP",
        "CONVEYOR_APP_REVISION",
        "CONVEYOR_INSTANCE_INDEX",
        "CONVEYOR_SERVICES",
        "GREETING",
        "HOME",
        "LANG",
        "LC_ALL",
        "PATH",
        "PORT",
        "TMPDIR",
        "TZ",
    }
    assert (seen["env GREETING"], seen["env CONVEYOR_APP"]) == ("hi", "a")
    assert seen["env HOME"] == seen["env TMPDIR"] == "/tmp"


def test_an_app_reads_its_droplet_and_writes_its_tmp_only(report: Any) -> None:
    assert report["a status"] == 0
    assert report["a"]["read own droplet"] == "ok"
    assert report["a"]["write own tmp"] == "ok"
    assert report["a"]["write own droplet"] != "ok"
    assert report["a"]["write platform code"] != "ok"


def test_sigterm_to_the_group_reaches_the_app_and_its_exit_code_comes_back(report: Any) -> None:
    assert report["b lines"] == ["ready", "got SIGTERM"]
    assert report["b status"] == 3
    assert report["b tmp left"] is False


def test_an_app_past_its_memory_limit_dies_with_the_memory_reason(report: Any) -> None:
    assert report["greedy status"] != 0
    assert "allocated" not in report["greedy lines"]
    assert report["greedy reason"].startswith("memory limit 64 MiB exceeded")
    assert "memory " in report["greedy isolation"]


def test_the_isolation_is_named_for_conveyor_app_to_show(report: Any) -> None:
    described = report["a isolation"]
    if report["a"]["uid"] == 0:  # the app is root of its own user namespace only
        assert described == "user namespace"
    else:
        assert described == f"namespaces+uid {app_uid('a')}"
        assert report["a"]["uid"] == app_uid("a")


# -- without the driver ---------------------------------------------------------


def test_instance_env_keeps_only_what_the_instance_is_given() -> None:
    host = {"PATH": "/opt/secret/bin", "LANG": "de_DE.UTF-8", "TZ": "UTC", "AWS_SECRET": "x"}
    env = instance_env(
        {"MODEL": "m.onnx"},
        app="scorer",
        revision=3,
        index=1,
        port=4321,
        services={"db": {"url": "postgresql://db"}},
        host_env={**host, "CONVEYOR_HOME": "/home/me/.conveyor"},
    )
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "de_DE.UTF-8",
        "TZ": "UTC",
        "MODEL": "m.onnx",
        "PORT": "4321",
        "CONVEYOR_INSTANCE_INDEX": "1",
        "CONVEYOR_APP": "scorer",
        "CONVEYOR_APP_REVISION": "3",
        "CONVEYOR_SERVICES": json.dumps(
            {"user-provided": [{"name": "db", "credentials": {"url": "postgresql://db"}}]}
        ),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }


def test_a_manifest_cannot_hand_an_app_the_platform_settings() -> None:
    env = instance_env(
        {"CONVEYOR_HOME": "/root/.conveyor", "CONVEYOR_API": "127.0.0.1:7070"},
        app="a",
        revision=1,
        index=0,
        port=1,
        host_env={},
    )
    assert "CONVEYOR_HOME" not in env
    assert "CONVEYOR_API" not in env


def test_each_app_has_its_own_stable_uid() -> None:
    assert app_uid("scorer") == app_uid("scorer")
    assert app_uid("scorer") != app_uid("fraud")
    assert 3_000_000 <= app_uid("scorer") < 3_000_000 + (1 << 20)


def test_the_registry_folder_is_hidden_even_outside_home(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "db").mkdir()
    settings = Settings.from_env(
        {
            "CONVEYOR_HOME": str(tmp_path / "home"),
            "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'registry.db'}",
        }
    )
    assert hidden_paths(settings) == [(tmp_path / "db").resolve(), (tmp_path / "home").resolve()]


def test_an_unknown_isolation_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"CONVEYOR_ISOLATION='nope'.*auto.*none"):
        Settings.from_env({"CONVEYOR_ISOLATION": "nope"})


def test_where_no_isolation_works_starting_is_refused_naming_the_opt_out(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path)})
    # An interpreter that cannot build the sandbox stands for a kernel that cannot.
    spawner = IsolatedSpawner(settings, python="/bin/false")
    with pytest.raises(IsolationUnavailable) as refused:
        asyncio.run(spawner.spawn(SpawnRequest(["true"], {}, None, lambda *_: None)))
    assert "cannot isolate app instances here" in refused.value.message
    assert "CONVEYOR_ISOLATION=none" in str(refused.value)


def test_an_operator_may_opt_out_and_conveyor_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "platform").mkdir(parents=True)
    (home / "platform" / "token").write_text("platform-token\n")
    settings = Settings.from_env({"CONVEYOR_HOME": str(home), "CONVEYOR_ISOLATION": "none"})
    lines: list[str] = []

    async def main() -> tuple[int, Isolation]:
        spawner = IsolatedSpawner(settings)
        handle = await spawner.spawn(
            SpawnRequest(
                ["cat", str(home / "platform" / "token")],
                {"PATH": os.environ["PATH"], "CONVEYOR_HOME": str(home)},
                None,
                lambda _stream, text: lines.append(text),
                Sandbox(app="a"),
            )
        )
        return await asyncio.wait_for(handle.wait(), SLOW), handle.isolation

    status, isolation = asyncio.run(main())
    assert (status, lines) == (0, ["platform-token"])
    assert isolation.describe() == "none (opted out: CONVEYOR_ISOLATION=none)"


def test_an_app_is_never_given_a_folder_holding_the_platform(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})
    settings.platform_dir.mkdir(parents=True)
    spawner = IsolatedSpawner(settings)
    for given in (settings.platform_dir, settings.home, tmp_path):
        sandbox = Sandbox(app="a", read_only=(given,))
        with pytest.raises(SpawnError, match=r"may not be given .*holds the platform's own files"):
            asyncio.run(spawner.spawn(SpawnRequest(["true"], {}, None, print, sandbox)))


def test_the_supervisor_runs_an_isolated_instance_and_stops_it(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})
    settings.platform_dir.mkdir(parents=True)
    # Run from a droplet, as a pushed app is: the checkout may lie under the instance's /tmp.
    droplet = tmp_path / "droplet"
    droplet.mkdir()
    hello = droplet / "hello.py"
    shutil.copy(Path(__file__).parent / "apps" / "hello.py", hello)
    events: list[tuple[str, object]] = []

    async def main() -> tuple[str, Any]:
        import httpx

        settled = asyncio.Event()

        def record(event: Event) -> None:
            events.append((event.kind, event.details.get("killed")))
            if event.kind in ("running", "crashed"):
                settled.set()

        supervisor = Supervisor(
            spawner=IsolatedSpawner(settings),
            base_env=instance_env({}, app="hello", revision=1, index=0, port=0),
            events=record,
        )
        spec = InstanceSpec(
            app="hello",
            command=(sys.executable, str(hello)),
            health=HealthCheck(type="http", endpoint="/health", timeout=SLOW),
            sandbox=Sandbox(app="hello", read_only=(droplet,)),
        )
        instance = supervisor.start(spec, 0)
        try:
            await settled.wait()
            assert instance.state is InstanceState.RUNNING, instance.last_crash
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{instance.port}/env?name=CONVEYOR_HOME"
                answer = (await client.get(url)).json()
        finally:
            await supervisor.stop_all()
        return instance.state.value, answer

    state, answer = asyncio.run(asyncio.wait_for(main(), SLOW))
    assert answer["value"] is None
    assert state == "DOWN"
    # SIGTERM reached the app through its sandbox: it ended within its grace period.
    assert events[-1] == ("stopped", False)


#: A platform that starts one instance with a memory limit, then dies without cleaning up.
DYING_PLATFORM = """
import asyncio, json, os, sys
from pathlib import Path
from conveyor.config import Settings
from conveyor.platform.instance_env import instance_env
from conveyor.platform.isolation import IsolatedSpawner, Sandbox
from conveyor.platform.processes import SpawnRequest

async def main():
    ready = asyncio.Event()
    handle = await IsolatedSpawner(Settings.from_env(os.environ)).spawn(SpawnRequest(
        [sys.executable, sys.argv[1], "--wait"],
        instance_env({}, app="left", revision=1, index=0, port=0),
        None,
        lambda _s, text: ready.set() if text == "ready" else None,
        Sandbox(app="left", read_only=(Path(sys.argv[1]).parent,), memory_limit=64 << 20),
    ))
    await ready.wait()
    found = {"pid": handle.pid, "tmp": str(handle.tmp_folder), "how": handle.describe_isolation()}
    print(json.dumps(found), flush=True)
    os._exit(0)

asyncio.run(main())
"""


def test_a_restarted_platform_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONVEYOR_HOME": str(tmp_path / "home")})
    settings.platform_dir.mkdir(parents=True)
    droplet = tmp_path / "droplet"  # as a pushed app; the checkout may be under /tmp
    droplet.mkdir()
    intruder = str(shutil.copy(Path(__file__).parent / "apps" / "intruder.py", droplet))
    done = subprocess.run(
        [sys.executable, "-c", DYING_PLATFORM, intruder],
        env={**os.environ, "CONVEYOR_HOME": str(settings.home)},
        capture_output=True,
        text=True,
        timeout=SLOW,
        check=True,
    )
    orphan = json.loads(done.stdout)
    # What `conveyor up` does first: stop the orphaned instance (all of its processes).
    exits = [os.pidfd_open(pid) for pid in group_members(orphan["pid"])]
    try:
        os.killpg(orphan["pid"], signal.SIGKILL)
        for exited in exits:
            assert select.select([exited], [], [], SLOW)[0] == [exited]
    finally:
        for exited in exits:
            os.close(exited)
    assert Path(orphan["tmp"]).exists()
    # Its folder, and its memory cgroup where it got one.
    assert IsolatedSpawner(settings).sweep() == (2 if "cgroup" in orphan["how"] else 1)
    assert not Path(orphan["tmp"]).exists()


def group_members(group: int) -> list[int]:
    """The pids of process group ``group``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit() and int(os.getpgid(int(entry.name))) == group:
                found.append(int(entry.name))
    return found
