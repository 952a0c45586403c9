"""The tests' Job controller on kmock: a step's Job ends as a test says, with its pod and log.

kmock runs no controller: a test plays it from a thread while the platform
waits for the Job's end.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.platform.control import Platform
from tests.waiting import PATIENCE, eventually

from .fake_api import NAMESPACE, FakeApi

IMAGE = "registry.example.com/ds/steps@sha256:" + "5a" * 32
DONE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}


def register(platform: Platform, name: str, command: str) -> None:
    folder = platform.project / name
    folder.mkdir(exist_ok=True)
    (folder / "step.py").write_text("print('step')\n")
    platform.cli("task", "app", "register", "--name", name, "--path", str(folder),
                 "--command", command)  # fmt: skip


def find_job(api: FakeApi, prefix: str) -> str | None:
    """A running Job (one the test has not ended yet) whose name starts with ``prefix``."""
    jobs = api.objects("Job")
    running = [n for n in jobs if n.startswith(prefix) and not (jobs[n].get("status") or {})]
    return running[0] if running else None


def end_job(
    api: FakeApi, prefix: str, exit_code: int, line: str, *, patience: float = PATIENCE
) -> dict[str, Any]:
    """Play the Job controller: the Job's pod ends with ``exit_code``, then the Job does."""
    name = eventually(partial(find_job, api, prefix), what=f"the Job {prefix}*", timeout=patience)
    pod = f"{name}-x7k2p"
    api.create(
        "Pod",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "labels": {"job-name": name}},
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [{"state": {"terminated": {"exitCode": exit_code}}}],
            },
        },
    )
    api.handler[f"get /api/v1/namespaces/{NAMESPACE}/pods/{pod}/log"] << line.encode() + b"\n"
    api.set_status("Job", name, DONE if exit_code == 0 else FAILED)
    job: dict[str, Any] = api.objects("Job")[name]
    return job
