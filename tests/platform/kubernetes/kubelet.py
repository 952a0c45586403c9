"""The tests' kubelet: a target whose artifact root is in SeaweedFS, and pods run as processes.

No cluster runs here. So a test plays the kubelet: it reads a Deployment the
platform applied to the fake API, resolves the container's variables (the
Secret's values substituted, as the kubelet does), and runs the container's
command as a local process; the image's part (Conveyor on its PATH) is this
checkout's virtualenv, the container's own filesystem a fresh HOME. A blob
reaches that process only through SeaweedFS, the tests' S3 server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from conveyor.platform.kubernetes.models import publish_model
from conveyor.platform.kubernetes.render import model_lineage
from conveyor.platform.kubernetes.target import KubernetesTarget
from conveyor.platform.spec import AppSpec
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry
from tests.platform.control import VENV_BIN, Platform
from tests.s3_server import BUCKET, SeaweedFS
from tests.waiting import eventually

from .conftest import push_playing
from .fake_api import CONTEXT, NAMESPACE, FakeApi

RUNTIME = "registry.example.com/ds/conveyor-runtime:1"
SECRET = "conveyor-s3"
READY = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}


def add_artifact_target(platform: Platform, api: FakeApi, seaweedfs: SeaweedFS) -> str:
    """Restart ``platform`` reaching the fake API and the S3 server; add target ``prod`` whose
    artifact root is a fresh prefix in the bucket, its credentials in Secret SECRET. The root."""
    prefix = f"s3://{BUCKET}/k8s-{os.urandom(6).hex()}"
    platform.extra_env.update(
        KUBECONFIG=str(api.kubeconfig),
        CONVEYOR_S3_ENDPOINT_URL=seaweedfs.endpoint,
        AWS_ACCESS_KEY_ID=seaweedfs.access_key,
        AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key,
    )
    platform.stop()
    platform.start()  # again, with the kubeconfig and S3 settings in its environment
    platform.cli(
        "target", "add", "prod", "--kubernetes", "--context", CONTEXT,
        "--namespace", NAMESPACE, "--registry", "registry.example.com/ds",
        "--runtime-image", RUNTIME, "--artifact-root", prefix, "--artifact-secret", SECRET,
    )  # fmt: skip
    credentials = {
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "AWS_ENDPOINT_URL": seaweedfs.endpoint,
    }
    api.create(
        "Secret",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in credentials.items()},
        },
    )
    return prefix


def bucket_key(prefix: str) -> str:
    """The object key prefix of an ``s3://BUCKET/...`` root."""
    return prefix.removeprefix(f"s3://{BUCKET}/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def container(api: FakeApi, app: str, home: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The app container's command and environment, as the kubelet would start it."""
    box = api.objects("Deployment")[app]["spec"]["template"]["spec"]["containers"][0]
    secrets = api.objects("Secret")
    env = {"PATH": VENV_BIN + os.pathsep + "/usr/bin:/bin", "HOME": str(home)}  # the image's
    for item in box["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        data = secrets[ref["name"]]["data"]
        if ref["key"] in data:
            env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
        else:
            assert ref.get("optional"), f"the Secret has no {ref['key']}"
    env["PORT"] = str(port)  # the pod's own network has 8080; here, a free port
    return list(box["command"]), env


@contextmanager
def pod(api: FakeApi, app: str, home: Path, *, ready: str) -> Iterator[str]:
    """The app's container run as a local process; its base URL while it runs (once GET
    ``ready`` answers 200)."""
    port = free_port()
    command, env = container(api, app, home, port)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}{ready}", timeout=5).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[0]
            return False

    try:
        eventually(answers, what=f"the pod of {app} to be ready", timeout=120)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def push_target(platform: Platform, api: FakeApi, app: str) -> subprocess.CompletedProcess[str]:
    """`conveyor push --target prod` while the test plays the Deployment controller."""
    return push_playing(platform, api, app=app, after="Service", status=READY)


def trusted(platform: Platform, model: str) -> list[str]:
    """The types the registered ``model``'s first version trusts (its run recorded them)."""
    version = json.loads(platform.cli("models", "versions", model, "--json").stdout)[0]
    return list(version["trusted_types"])


def predicted(
    seaweedfs: SeaweedFS,
    prefix: str,
    digest: str,
    rows: Mapping[str, list[Any]],
    trust: list[str],
) -> list[Any]:
    """What the pipeline whose blob is ``digest`` under ``prefix`` predicts for ``rows``."""
    import pandas as pd
    import skops.io

    client: Any = seaweedfs.client()
    key = f"{bucket_key(prefix)}/blake3/{digest.partition(':')[2]}"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    model = skops.io.loads(body, trusted=trust)
    return list(model.predict(pd.DataFrame(dict(rows))).tolist())


async def push_following(
    api: FakeApi,
    target: KubernetesTarget,
    spec: AppSpec,
    registry: Registry,
    source: BlobStore,
    root: BlobStore,
    image: str,
) -> None:
    """Publish ``spec``'s registered model to ``root`` and push it to ``target`` as revision 1,
    while the test plays the Deployment controller."""
    blob = publish_model(spec.model or "", registry, source, root, print)

    def play() -> None:
        eventually(lambda: spec.name in api.objects("Deployment"), what=f"{spec.name} applied")
        api.set_status("Deployment", spec.name, READY)

    playing = threading.Thread(target=play)
    playing.start()
    await target.push(
        spec, revision=1, droplet={}, progress=print,
        lineage=model_lineage(spec, blob), image=image, model=blob,
    )  # fmt: skip
    await asyncio.to_thread(playing.join, 60)
