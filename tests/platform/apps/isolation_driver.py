"""The platform side of the isolation tests, run as its own process (possibly as another user).

argv[1] is JSON: ``{"home": …, "user": …, "droplets": {"a": …, "b": …}, "memory_limit": …,
"cgroups": …, "isolation": …}``.
It starts app b (which waits), then app a (the intruder) aimed at the token,
the registry, b's droplet, b's temporary folder, b's processes and the
platform's own, then stops b with SIGTERM and runs an app past its memory
limit. One JSON report goes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import conveyor
from conveyor.config import Settings
from conveyor.platform.instance_env import instance_env
from conveyor.platform.isolation import IsolatedProcess, IsolatedSpawner, Sandbox
from conveyor.platform.processes import SpawnRequest

INTRUDER = str(Path(__file__).with_name("intruder.py"))
#: A file app a tries to plant in the platform's own code (writable by the platform's user).
PLANTED = Path(conveyor.__file__).with_name(f".planted-{os.getpid()}.py")
#: What the shell that started the platform holds: none of it may reach an app.
PLATFORM_SHELL = {
    "CONVEYOR_API": "127.0.0.1:7070",
    "CONVEYOR_DATABASE_URL": "sqlite:////nowhere/registry.db",
    "SHELL_SECRET": "s3cret",
}


def app_pids(group: int) -> list[int]:
    """The app's processes in an instance's group: not the wrapper nor its init."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and group not in (int(entry.name), int(fields[1])):
            found.append(int(entry.name))
    return found


class Instance:
    """One started app, its output and the event of a given line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ready = asyncio.Event()
        self.handle: IsolatedProcess | None = None

    def output(self, _stream: str, text: str) -> None:
        self.lines.append(text)
        if text == "ready":
            self.ready.set()


async def start(
    spawner: IsolatedSpawner, app: str, argv: list[str], droplet: Path | None, **sandbox: Any
) -> Instance:
    host_env = {**os.environ, **PLATFORM_SHELL}
    env = instance_env({"GREETING": "hi"}, app=app, revision=1, index=0, port=0, host_env=host_env)
    # What the supervisor passes today: its own home among the rest; the spawner drops it.
    env["CONVEYOR_HOME"] = os.environ["CONVEYOR_HOME"]
    if droplet and INTRUDER in argv:
        # The app runs from its droplet, as a pushed app does: the checkout this test runs
        # from may lie where the sandbox shows the instance its own folder (under /tmp).
        shutil.copy(INTRUDER, droplet / "intruder.py")
        argv = [str(droplet / "intruder.py") if a == INTRUDER else a for a in argv]
    instance = Instance()
    instance.handle = await spawner.spawn(
        SpawnRequest(
            argv,
            env,
            droplet,
            instance.output,
            Sandbox(app=app, read_only=(droplet,) if droplet else (), **sandbox),
        )
    )
    return instance


async def main(job: dict[str, Any]) -> dict[str, Any]:
    home = Path(job["home"])
    drop_a, drop_b = Path(job["droplets"]["a"]), Path(job["droplets"]["b"])
    # "isolation": "none" shows what each check meets without the sandbox.
    isolation = job.get("isolation", "auto")
    settings = Settings.from_env({"CONVEYOR_HOME": str(home), "CONVEYOR_ISOLATION": isolation})
    spawner = IsolatedSpawner(settings, memory_cgroups=job.get("cgroups", True))
    report: dict[str, Any] = {}
    neighbour = await start(spawner, "b", [sys.executable, INTRUDER, "--wait"], drop_b)
    assert neighbour.handle is not None
    await asyncio.wait_for(neighbour.ready.wait(), 60)
    plan = {
        "read": {
            "token": str(home / "platform" / "token"),
            "registry": str(home / "registry.db"),
            "b's droplet": str(drop_b / "secret.txt"),
            "b's tmp": str(neighbour.handle.tmp_folder / "mine.txt"),
            "own droplet": str(drop_a / "app.txt"),
            "platform environ": f"/proc/{os.getpid()}/environ",
            "user's key": str(Path(job["user"]) / ".ssh" / "id_ed25519"),
        },
        "write": {
            "own tmp": "/tmp/scratch.txt",
            "own droplet": str(drop_a / "new.txt"),
            "platform code": str(PLANTED),
        },
        "signal": {
            "b": neighbour.handle.pid,
            **{f"b's app {i}": pid for i, pid in enumerate(app_pids(neighbour.handle.pid))},
            "platform": os.getpid(),
        },
        "env": ["GREETING", "PORT", "CONVEYOR_APP", "HOME", "TMPDIR", *PLATFORM_SHELL],
    }
    intruder = await start(spawner, "a", [sys.executable, INTRUDER, json.dumps(plan)], drop_a)
    assert intruder.handle is not None
    report["a status"] = await intruder.handle.wait()
    report["a"] = json.loads(intruder.lines[-1]) if intruder.lines else intruder.lines
    report["a isolation"] = intruder.handle.isolation.describe()
    PLANTED.unlink(missing_ok=True)  # only there if the check failed
    neighbour.handle.signal_group(signal.SIGTERM)
    report["b status"] = await neighbour.handle.wait()
    report["b lines"] = neighbour.lines
    report["b tmp left"] = neighbour.handle.tmp_folder.exists()
    hog = "x = b'1' * (256 << 20); print('allocated', flush=True)"
    greedy = await start(
        spawner, "greedy", [sys.executable, "-c", hog], None, memory_limit=job["memory_limit"]
    )
    assert greedy.handle is not None
    status = await greedy.handle.wait()
    report["greedy status"] = status
    report["greedy reason"] = greedy.handle.crash_reason(status)
    report["greedy lines"] = greedy.lines
    report["greedy isolation"] = greedy.handle.isolation.describe()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
