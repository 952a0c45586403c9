"""A push with the platform's artifacts in an S3 bucket: uploads, droplets and `conveyor status`."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.store.artifacts import ArtifactStore
from tests.s3_server import SeaweedFS

from .control import Platform, get

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def test_push_stages_from_the_bucket_and_status_names_it(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_url: str
) -> None:
    (tmp_path / "project").mkdir()
    platform = Platform(
        home=tmp_path / "home",
        project=tmp_path / "project",
        extra_env={
            "CONVEYOR_ARTIFACT_ROOT": s3_url,
            "CONVEYOR_S3_ENDPOINT_URL": seaweedfs.endpoint,
            "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        },
    )
    platform.start()
    try:
        manifest = platform.write_hello_app("hello", instances=1)
        pushed = platform.cli("push", "-f", str(manifest))
        assert "hello: revision 1 running with 1 instance(s)" in pushed.stdout
        assert "1 uploaded" in pushed.stderr

        status, body = get(f"{platform.router}/hello/")
        assert status == 200, body
        assert f"store:  {s3_url}" in platform.cli("status").stdout
        store = ArtifactStore.from_settings(platform.settings)
        assert len(list(store.list())) == 1  # hello.py, uploaded to the bucket
        assert not (platform.home / "artifacts").exists()
    finally:
        platform.stop()
