"""A registered model pushed to a Kubernetes target, served from the S3 artifact root.

No cluster runs here. So the test plays the kubelet: it reads the Deployment
the push applied to the fake API, resolves the container's variables (the
Secret's values substituted, as the kubelet does), and runs the container's
command as a local process; the image's part (Conveyor on its PATH) is this
checkout's virtualenv, the container's own filesystem a fresh HOME. The blob
reaches that process only through SeaweedFS, the test's S3 server.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.platform.control import VENV_BIN, Platform, running_platform
from tests.s3_server import BUCKET, SeaweedFS
from tests.trained_models import TRAIN
from tests.waiting import eventually

from .conftest import push_playing
from .fake_api import CONTEXT, NAMESPACE, FakeApi, fake_api

pytestmark = pytest.mark.slow

RUNTIME = "registry.example.com/ds/conveyor-runtime:1"
SECRET = "conveyor-s3"
READY = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
ROWS = {"sex": ["m", "f"], "age": [41.0, 63.0], "bp": [140.0, 101.0]}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: SeaweedFS
) -> Iterator[tuple[Platform, FakeApi, str]]:
    """A platform that reaches the S3 server, a target whose artifact root is a fresh prefix
    in it, the model ``dx`` registered (alias champion) from a recorded run."""
    root = tmp_path_factory.mktemp("k8s-models")
    prefix = f"s3://{BUCKET}/k8s-{os.urandom(6).hex()}"
    with fake_api(root) as api, running_platform(root / "platform") as platform:
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
        (platform.project / "train.py").write_text(TRAIN)
        platform.cli("run", "--", "python", "train.py")
        run_id = json.loads(platform.cli("runs", "--json").stdout)[0]["id"]
        platform.cli("models", "register", f"run:{run_id}/pipeline", "--name", "dx")
        platform.cli("models", "alias", "dx", "champion", "1")
        (platform.project / "conveyor.yml").write_text(
            "applications:\n  - name: dx\n    model: models:/dx@champion\n"
        )
        yield platform, api, prefix


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kubelet(api: FakeApi, home: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The app container's command and environment, as the kubelet would start it."""
    box = api.objects("Deployment")["dx"]["spec"]["template"]["spec"]["containers"][0]
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


def _expected(platform: Platform, seaweedfs: SeaweedFS, prefix: str, digest: str) -> list[Any]:
    """What the registered pipeline predicts for ROWS, loaded from the bucket's blob."""
    import pandas as pd
    import skops.io

    version = json.loads(platform.cli("models", "versions", "dx", "--json").stdout)[0]
    client: Any = seaweedfs.client()
    key = f"{_key(prefix)}/blake3/{digest.partition(':')[2]}"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    model = skops.io.loads(body, trusted=list(version["trusted_types"]))
    return list(model.predict(pd.DataFrame(ROWS)).tolist())


def test_a_registered_model_app_on_a_target_is_served_from_the_artifact_root(
    served: tuple[Platform, FakeApi, str], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    platform, api, prefix = served
    pushed = push_playing(platform, api, app="dx", after="Service", status=READY)
    assert "dx: revision 1 rolled out on prod" in pushed.stdout
    assert f"uploaded to {prefix}" in pushed.stderr
    deployment = api.objects("Deployment")["dx"]
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    digest = notes["conveyor.dev/model-digest"]
    assert (notes["conveyor.dev/model-name"], notes["conveyor.dev/model-version"]) == ("dx", "1")
    box = deployment["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == RUNTIME  # nothing to build: the runtime image fetches the model
    assert all("value" not in e for e in box["env"] if e["name"].startswith("AWS_"))

    # The blob is in the bucket under the target's root, named by its digest.
    client: Any = seaweedfs.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=_key(prefix) + "/")
    keys = [o["Key"] for o in listed.get("Contents", ())]
    assert [k.rsplit("/", 2)[1:] for k in keys] == [["blake3", digest.partition(":")[2]]]

    # `k8s render` prints exactly what the push applied.
    applied = [r.data for r in api.requests() if r.method == "PATCH" and r.subresource is None]
    rendered = platform.cli("k8s", "render", "--target", "prod").stdout
    assert list(yaml.safe_load_all(rendered)) == applied

    with _pod(api, tmp_path / "pod-home") as base:
        request = {
            "inputs": [
                {"name": "sex", "shape": [2], "datatype": "BYTES", "data": ROWS["sex"]},
                {"name": "age", "shape": [2], "datatype": "FP64", "data": ROWS["age"]},
                {"name": "bp", "shape": [2], "datatype": "FP64", "data": ROWS["bp"]},
            ]
        }
        answer = httpx.post(f"{base}/v2/models/dx/infer", json=request, timeout=30)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert outputs["label"] == _expected(platform, seaweedfs, prefix, digest)
        assert answer.headers["x-model-version"] == "dx/1"


def test_a_second_push_finds_the_blob_and_uploads_nothing(
    served: tuple[Platform, FakeApi, str],
) -> None:
    platform, api, prefix = served
    pushed = push_playing(platform, api, app="dx", after="Service", status=READY)
    assert "dx: revision 2 rolled out on prod" in pushed.stdout
    assert f"already in {prefix}" in pushed.stderr
    assert "uploaded" not in pushed.stderr


def test_a_changed_object_in_the_bucket_is_never_served(
    served: tuple[Platform, FakeApi, str], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    _, api, prefix = served
    notes = api.objects("Deployment")["dx"]["spec"]["template"]["metadata"]["annotations"]
    key = f"{_key(prefix)}/blake3/{notes['conveyor.dev/model-digest'].partition(':')[2]}"
    client: Any = seaweedfs.client()
    original = client.get_object(Bucket=BUCKET, Key=key)
    data = original["Body"].read()
    client.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=data[:-1] + bytes([data[-1] ^ 1]),
        Metadata=original["Metadata"],
    )
    try:
        command, env = _kubelet(api, tmp_path / "pod-home", _free_port())
        refused = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert refused.returncode != 0
        assert f"the bytes of {prefix}/blake3/" in refused.stderr
        assert "no longer match its digest" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=original["Metadata"])


def test_a_registered_model_needs_a_target_with_an_artifact_root(
    served: tuple[Platform, FakeApi, str],
) -> None:
    platform, _, _ = served
    platform.cli(
        "target", "add", "rootless", "--kubernetes", "--context", CONTEXT,
        "--namespace", NAMESPACE, "--registry", "registry.example.com/ds",
        "--runtime-image", RUNTIME,
    )  # fmt: skip
    for args in (("push", "--target", "rootless"), ("k8s", "render", "--target", "rootless")):
        refused = platform.cli(*args, check=False)
        assert refused.returncode != 0
        assert "has no artifact root" in refused.stderr
        assert "--artifact-root s3://" in refused.stderr


def _key(prefix: str) -> str:
    return prefix.removeprefix(f"s3://{BUCKET}/")


@contextmanager
def _pod(api: FakeApi, home: Path) -> Iterator[str]:
    """The app's container run as a local process; its base URL while it runs."""
    port = _free_port()
    command, env = _kubelet(api, home, port)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[0]
            return False

    try:
        eventually(ready, what="the pod's conveyor serve to be ready", timeout=120)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
