"""A registered model pushed to a Kubernetes target, served from the S3 artifact root.

No cluster runs here. So the test plays the kubelet: it reads the Deployment
the push applied to the fake API, resolves the container's variables (the
Secret's values substituted, as the kubelet does), and runs the container's
command as a local process; the image's part (Conveyor on its PATH) is this
checkout's virtualenv, the container's own filesystem a fresh HOME. The blob
reaches that process only through SeaweedFS, the test's S3 server.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.platform.control import Platform, running_platform
from tests.s3_server import BUCKET, SeaweedFS
from tests.trained_models import TRAIN

from .fake_api import CONTEXT, NAMESPACE, FakeApi, fake_api
from .kubelet import (
    RUNTIME,
    add_artifact_target,
    bucket_key,
    container,
    free_port,
    pod,
    predicted,
    push_target,
    trusted,
)

pytestmark = pytest.mark.slow

ROWS: dict[str, list[Any]] = {"sex": ["m", "f"], "age": [41.0, 63.0], "bp": [140.0, 101.0]}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: SeaweedFS
) -> Iterator[tuple[Platform, FakeApi, str]]:
    """A platform that reaches the S3 server, a target whose artifact root is a fresh prefix
    in it, the model ``dx`` registered (alias champion) from a recorded run."""
    root = tmp_path_factory.mktemp("k8s-models")
    with fake_api(root) as api, running_platform(root / "platform") as platform:
        prefix = add_artifact_target(platform, api, seaweedfs)
        (platform.project / "train.py").write_text(TRAIN)
        platform.cli("run", "--", "python", "train.py")
        run_id = json.loads(platform.cli("runs", "--json").stdout)[0]["id"]
        platform.cli("models", "register", f"run:{run_id}/pipeline", "--name", "dx")
        platform.cli("models", "alias", "dx", "champion", "1")
        (platform.project / "conveyor.yml").write_text(
            "applications:\n  - name: dx\n    model: models:/dx@champion\n"
        )
        yield platform, api, prefix


def test_a_registered_model_app_on_a_target_is_served_from_the_artifact_root(
    served: tuple[Platform, FakeApi, str], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    platform, api, prefix = served
    pushed = push_target(platform, api, "dx")
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
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=bucket_key(prefix) + "/")
    keys = [o["Key"] for o in listed.get("Contents", ())]
    assert [k.rsplit("/", 2)[1:] for k in keys] == [["blake3", digest.partition(":")[2]]]

    # `k8s render` prints exactly what the push applied.
    applied = [r.data for r in api.requests() if r.method == "PATCH" and r.subresource is None]
    rendered = platform.cli("k8s", "render", "--target", "prod").stdout
    assert list(yaml.safe_load_all(rendered)) == applied

    with pod(api, "dx", tmp_path / "pod-home", ready="/v2/health/ready") as base:
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
        assert outputs["label"] == predicted(
            seaweedfs, prefix, digest, ROWS, trusted(platform, "dx")
        )
        assert answer.headers["x-model-version"] == "dx/1"


def test_a_second_push_finds_the_blob_and_uploads_nothing(
    served: tuple[Platform, FakeApi, str],
) -> None:
    platform, api, prefix = served
    pushed = push_target(platform, api, "dx")
    assert "dx: revision 2 rolled out on prod" in pushed.stdout
    assert f"already in {prefix}" in pushed.stderr
    assert "uploaded" not in pushed.stderr


def test_a_changed_object_in_the_bucket_is_never_served(
    served: tuple[Platform, FakeApi, str], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    _, api, prefix = served
    notes = api.objects("Deployment")["dx"]["spec"]["template"]["metadata"]["annotations"]
    key = f"{bucket_key(prefix)}/blake3/{notes['conveyor.dev/model-digest'].partition(':')[2]}"
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
        command, env = container(api, "dx", tmp_path / "pod-home", free_port())
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
