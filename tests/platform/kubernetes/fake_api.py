"""A fake Kubernetes API for the client's tests: PyPI ``kmock`` in a thread, on a free port.

kmock keeps objects in memory and serves create/get/list/patch/delete, and
merges a ``PATCH .../status`` into the object, which is how the tests play the
Deployment and Job controllers. It has no server-side apply: a small shim
here makes an apply of a missing object create it. Nothing here checks what
a real API server would (field ownership, dry-run, selectors, generations):
the tests assert on the requests Conveyor sends, and on how it reads answers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock

from conveyor.platform.kubernetes.client import KINDS, Cluster
from conveyor.platform.kubernetes.config import KubernetesConfig

NAMESPACE = "ds-team"
CONTEXT = "kmock"


class ApplyingEmulator(kmock.KubernetesEmulator):
    """kmock, where a server-side apply (``apply-patch+yaml``) of a missing object creates it."""

    async def _handle(self, request: Any) -> Any:
        kind = request.headers.get("Content-Type", "")
        if (
            request.method == kmock.method.PATCH
            and "apply-patch" in kind
            and request.subresource is None
            and request.name
        ):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects:
                    self._objects[key] = request.data
                elif self._objects[key].deleted:
                    self._objects[key].create(request.data)
        return await super()._handle(request)


@dataclass
class FakeApi:
    """The running fake: its URL, its handler (requests, objects) and a kubeconfig for it."""

    handler: Any
    port: int
    kubeconfig: Path
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, **overrides: Any) -> KubernetesConfig:
        settings: dict[str, Any] = {
            "context": CONTEXT,
            "namespace": NAMESPACE,
            "registry": "registry.example.com/ds",
            "artifact_root": "s3://conveyor-artifacts/ds",
        }
        settings.update(overrides)
        return KubernetesConfig(**settings)

    def cluster(self, **overrides: Any) -> Cluster:
        return Cluster.connect(self.config(**overrides), kubeconfig=str(self.kubeconfig))

    def requests(self) -> list[Any]:
        return list(self.handler)

    def send(self, method: str, path: str, body: Any, content_type: str) -> Any:
        """What a controller would write: e.g. a Deployment's status, over HTTP."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode(),
            headers={"Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        where = KINDS[kind]
        path = f"{where.prefix}/namespaces/{NAMESPACE}/{where.plural}/{name}/status"
        self.send("PATCH", path, {"status": status}, "application/merge-patch+json")

    def create(self, kind: str, obj: dict[str, Any]) -> None:
        where = KINDS[kind]
        self.send(
            "POST", f"{where.prefix}/namespaces/{NAMESPACE}/{where.plural}", obj, "application/json"
        )

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """What the fake holds of ``kind`` now, by name."""
        found = {}
        with urllib.request.urlopen(
            self.url + f"{KINDS[kind].prefix}/namespaces/{NAMESPACE}/{KINDS[kind].plural}",
            timeout=10,
        ) as response:
            for item in json.loads(response.read())["items"]:
                found[item["metadata"]["name"]] = item
        return found


def _kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [
                    {
                        "name": CONTEXT,
                        "context": {"cluster": "fake", "user": "tester", "namespace": NAMESPACE},
                    }
                ],
                "current-context": CONTEXT,
            }
        )
    )
    return path


@contextmanager
def fake_api(folder: Path) -> Iterator[FakeApi]:
    """kmock serving on a free loopback port in a thread of its own, stopped after."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with ApplyingEmulator() as handler, kmock.Server(handler) as server:
            for where in KINDS.values():  # listing a kind with no object yet is not a 404
                group = f"{where.group}/" if where.group else ""
                key = f"{group}{where.version}/{where.plural}"
                handler.resources[key] = kmock.ResourceInfo(namespaced=True)
            box.update(handler=handler, port=server.port, loop=asyncio.get_running_loop())
            box["stop"] = asyncio.Event()
            started.set()
            await box["stop"].wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="kmock", daemon=True)
    thread.start()
    assert started.wait(30), "kmock did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield FakeApi(
            box["handler"],
            box["port"],
            _kubeconfig(folder / "kubeconfig", box["port"]),
            box["loop"],
        )
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
